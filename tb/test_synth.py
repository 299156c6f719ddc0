"""Tests of the synthesis flow (synth/): parser on real Yosys output, every block on a small
configuration, Liberty errors, areas positive and growing with size, comparisons, sweeps."""

import shutil
import json
from pathlib import Path

import pytest

from synth import compare, design
from synth.__main__ import Runner, load_blocks, main
from synth.flow import best_macro, instance_counts, synthesize
from synth.liberty import DEFAULT_LIBERTY, LibertyError, load_liberty

ROOT = Path(__file__).resolve().parent.parent
LIBERTY = DEFAULT_LIBERTY

# Small configurations of the registered blocks (fast to synthesize); a block missing here
# is synthesized at its defaults.
SMALL = {
    "systolic_pe": {"in_width": 4, "acc_width": 12},
    "systolic_array": {"rows": 2, "cols": 2, "in_width": 4, "acc_width": 10},
    "sar_adc_controller": {"max_bits": 4, "columns": 4},
    "shift_add_dequantizer": {"xbars": 2, "units": 1, "n_out": 2, "rows": 8, "input_bits": 2,
                              "weight_bits": 2, "cell_bits": 1, "adc_bits": 4,
                              "scale_bits": 6, "scale_frac_bits": 4, "out_bits": 8,
                              "encoding": "none"},
    "noc_router": {"ports": 5, "vcs": 1, "buffer": 3, "payload_width": 4, "dims": (2, 2)},
    "noc_network": {"topology": "mesh", "dims": (2, 2), "vcs": 1, "buffer": 3,
                    "payload_width": 4},
    "pim_tile": {"crossbars": 2, "rows": 8, "cols": 8, "input_bits": 2, "weight_bits": 2,
                 "adc_bits": 4, "resolutions": (3, 4), "group": 2, "row_blocks": 1,
                 "outputs": 8, "scale_bits": 6, "scale_frac_bits": 4, "out_bits": 8},
    "network_interface": {"payload_width": 8, "elem_width": 4, "length": 4, "nodes": 4,
                          "layer_bits": 2, "stage_bits": 2, "offset_bits": 4},
    # Its 64-bit products do not shrink with width: ~40 s even at the smallest size.
    "nonlinear_unit": {"width": 4, "out_width": 4, "max_len": 4},
    "pim_core": {"tiles": 2, "tile": "small", "ni": "small", "mem_words": 16},
    # Its nonlinear unit is 16 bits wide at every size (the chip's elements).
    "systolic_core": {"rows": 2, "cols": 2, "length": 8, "mem_words": 16, "nodes": 4,
                      "nl_max_len": 8},
}

# A hand-written hierarchical design: two instances of a leaf with a memory and a register.
HIER_V = """
module leaf(input clk, input [3:0] a, input [3:0] b, output reg [4:0] s);
  always @(posedge clk) s <= a + b;
endmodule
module top(input clk, input [3:0] a, input [3:0] b, output [4:0] s0, output [4:0] s1,
           output reg q);
  leaf u0(.clk(clk), .a(a), .b(b), .s(s0));
  leaf u1(.clk(clk), .a(b), .b(a), .s(s1));
  wire [4:0] s2;
  leaf u2(.clk(clk), .a(a ^ b), .b(a), .s(s2));
  always @(posedge clk) q <= ^s2;
endmodule
"""


BLOCKS = load_blocks()


def small_params(name, blocks):
    known = {p.name for p in blocks[name].params}
    return {k: v for k, v in SMALL.get(name, {}).items() if k in known}


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return Runner(tmp_path_factory.mktemp("synth"), liberty=LIBERTY)


def test_liberty_reader():
    lib = load_liberty(LIBERTY)
    nand = lib.cells["sg13g2_nand2_1"]
    assert nand.area > 0 and not nand.sequential
    assert nand.pins["Y"] == "output" and nand.arcs[("A", "Y")] > 0
    assert lib.cells["sg13g2_dfrbpq_1"].sequential


@pytest.mark.parametrize("content,match", [
    (None, "does not exist"),
    ("this is not liberty at all", "not a Liberty library"),
    ("library (x) { cell (a) { ", "not a Liberty library"),
])
def test_bad_liberty_is_a_one_line_error(tmp_path, capsys, content, match):
    path = tmp_path / "bad.lib"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LibertyError, match=match):
        load_liberty(path)
    with pytest.raises(SystemExit) as exc:
        main(["all", "--liberty", str(path), "--out-dir", str(tmp_path / "out"),
              "--blocks", "systolic_pe"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Liberty file") and match in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_liberty_directory_is_an_error(tmp_path):
    with pytest.raises(LibertyError, match="is not a file"):
        load_liberty(tmp_path)


def test_parser_on_real_yosys_output(tmp_path):
    rep = synthesize(HIER_V, "top", liberty=LIBERTY, work_dir=tmp_path)
    mods = rep["modules"]
    assert set(mods) == {"top", "leaf"}
    assert mods["leaf"]["instances"] == 3 and mods["top"]["instances"] == 1
    assert mods["top"]["submodules"] == {"leaf": 3}
    # Hierarchical totals are the top's local logic plus three leaves.
    assert rep["cells"]["total"] == mods["top"]["cells"] + 3 * mods["leaf"]["cells"]
    assert rep["area_um2"] == pytest.approx(mods["top"]["area_um2"] + 3 * mods["leaf"]["area_um2"],
                                            rel=1e-6)
    assert 0 < rep["seq_area_um2"] < rep["area_um2"]
    # 16 flip-flops (3 x 5 + 1), each counted by the transistor estimate.
    assert rep["cells"]["by_type"].get("$_DFF_P_", 0) == 16
    assert rep["transistors"] >= 16 * 16
    assert mods["leaf"]["levels"] >= 2 and mods["leaf"]["delay_ns"] > 0
    assert rep["depth"]["module"] in mods and rep["depth"]["delay_ns"] > 0
    # The stat report read back by instance_counts.
    stat = json.loads((tmp_path / "generic.stat.json").read_text())
    assert instance_counts(stat, "top") == {"top": 1, "leaf": 3}


def test_without_liberty_counts_gates_and_transistors(tmp_path):
    rep = synthesize(HIER_V, "top", work_dir=tmp_path)
    assert rep["area_um2"] is None and rep["depth"]["delay_ns"] is None
    assert rep["transistors"] > 0 and rep["depth"]["levels"] > 0
    assert rep["depth"]["level_unit"] == "generic gates"


def test_sram_macro_choice():
    macros = [("m256x64", 256, 64, 100.0, "a.lib"), ("m4096x16", 4096, 16, 300.0, "b.lib")]
    assert best_macro(64, 256, macros) == {"macro": "m256x64", "count": 1, "area_um2": 100.0}
    assert best_macro(16, 4096, macros)["macro"] == "m4096x16"
    assert best_macro(128, 512, macros)["count"] == 4


#: Blocks made only of other blocks: their parts are synthesized small above, and the chip's
#: area report (per unit, counted by instance) is built by ``make synth`` at full size.
COMPOSITES = {"atleus_chip"}


@pytest.mark.parametrize("name", sorted(set(BLOCKS) - COMPOSITES))
def test_every_block_small(runner, name):
    params = small_params(name, runner.blocks)
    rep = runner(name, params)
    assert rep["cells"]["total"] > 0 and rep["transistors"] > 0
    assert rep["depth"]["levels"] > 0
    assert rep["area_um2"] > 0 and 0 <= rep["seq_area_um2"] <= rep["area_um2"]
    for m in rep["modules"].values():
        assert m["instances"] >= 1


GROWTH = [("systolic_pe", "in_width", 4, 6), ("sar_adc_controller", "max_bits", 4, 8),
          ("systolic_array", "rows", 2, 4)]


@pytest.mark.parametrize("name,param,small,big", [g for g in GROWTH if g[0] in BLOCKS])
def test_area_grows_with_size(runner, name, param, small, big):
    base = small_params(name, runner.blocks)
    a = runner(name, dict(base, **{param: small}))
    b = runner(name, dict(base, **{param: big}))
    assert b["transistors"] > a["transistors"] > 0
    assert b["area_um2"] > a["area_um2"] > 0


def test_comparisons_without_blocks_are_not_available():
    out = compare.run_comparisons(lambda *a: pytest.fail("must not synthesize"), {})
    assert set(out) == set(compare.COMPARISONS)
    for comp in out.values():
        assert comp["available"] is False and "not available" in comp["notes"][-1]


def test_adc_area_model():
    assert compare.adc_area_um2(8) == compare.ISAAC_ADC_8BIT_UM2
    assert compare.adc_area_um2(7) == 2 * compare.adc_area_um2(6)


def test_sweep_cli(tmp_path, capsys):
    code = main(["sweep", "systolic_pe", "--in-width", "3,5", "--acc-width", "10",
                 "--out-dir", str(tmp_path), "--liberty", str(LIBERTY)])
    assert code == 0
    report = json.loads((tmp_path / "sweep_systolic_pe_in_width.json").read_text())
    rows = report["rows"]
    assert [r["parameters"]["in_width"] for r in rows] == [3, 5]
    assert rows[1]["area_um2"] > rows[0]["area_um2"] > 0
    assert (tmp_path / "sweep_systolic_pe_in_width.png").stat().st_size > 0


def test_cli_errors(tmp_path, capsys):
    for argv, match in ([["sweep", "no_such_block"], "unknown block"],
                        [["sweep", "systolic_pe", "--in-width", "x"], "in_width"],
                        [["all", "--blocks", "no_such_block", "--out-dir", str(tmp_path)],
                         "unknown block"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err


def test_all_and_summary(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["all", "--blocks", "systolic_pe", "--no-compare", "--out-dir", str(out),
                 "--verilog-dir", str(tmp_path / "none"), "--liberty", str(LIBERTY)])
    assert code == 0
    report = json.loads((out / "area.json").read_text())
    assert report["schema"] == 1 and report["tools"]["yosys"].startswith("Yosys")
    assert report["blocks"][0]["block"] == "systolic_pe" and report["wall_seconds"] > 0
    assert (out / "area.md").read_text().startswith("# Area report")
    assert (out / "area.png").stat().st_size > 0
    capsys.readouterr()
    main(["summary", "--out-dir", str(out)])
    assert "systolic_pe" in capsys.readouterr().out



def test_split_children_and_stub():
    mods = design.split_modules(HIER_V)
    assert list(mods) == ["leaf", "top"]
    assert design.children(mods) == {"leaf": [], "top": ["leaf"]}
    stub = design.stub(mods["leaf"])
    assert stub.startswith("module leaf(") and "always" not in stub
    assert design.register_bits(mods["leaf"]) == 5


def test_rtlil_design_matches_verilog(tmp_path):
    """The RTLIL the flow reads has the modules of ``hdl.verilog.generate`` and synthesizes
    to the same netlist."""
    from hdl.verilog import generate
    block = BLOCKS["systolic_array"]
    params = small_params("systolic_array", BLOCKS)
    rtlil = design.generate_rtlil(block.build(**params), block.module_name)
    verilog = generate(block.build(**params), block.module_name)
    assert design.is_rtlil(rtlil) and not design.is_rtlil(verilog)
    il_mods, v_mods = design.split_modules(rtlil), design.split_modules(verilog)
    assert set(il_mods) == set(v_mods)
    assert design.children(il_mods) == design.children(v_mods)
    a = synthesize(rtlil, block.module_name, liberty=LIBERTY, work_dir=tmp_path / "il")
    b = synthesize(verilog, block.module_name, liberty=LIBERTY, work_dir=tmp_path / "v")
    assert a["modules"].keys() == b["modules"].keys()
    assert a["cells"]["by_type"].get("$_DFF_P_") == b["cells"]["by_type"].get("$_DFF_P_")
    assert a["area_um2"] == pytest.approx(b["area_um2"], rel=0.05)


def test_lean_mapping_is_labelled_and_cached(tmp_path):
    full = synthesize(HIER_V, "top", liberty=LIBERTY, work_dir=tmp_path / "full")
    lean = synthesize(HIER_V, "top", liberty=LIBERTY, work_dir=tmp_path / "lean",
                      lean_bits=-1, cache_dir=tmp_path / "cache")
    assert all(m.startswith("synth") for m in full["mapping"].values())
    assert all(m.startswith("lean") for m in lean["mapping"].values())
    # Same flip-flops; the quick ABC script maps the adders a little worse, not differently.
    assert lean["cells"]["by_type"]["$_DFF_P_"] == 16
    assert lean["seq_area_um2"] == pytest.approx(full["seq_area_um2"])
    assert full["area_um2"] <= lean["area_um2"] < 1.5 * full["area_um2"]
    assert lean["modules"]["top"]["levels"] is None      # lean modules are not timed
    again = synthesize(HIER_V, "top", liberty=LIBERTY, work_dir=tmp_path / "again",
                       lean_bits=-1, cache_dir=tmp_path / "cache")
    assert all(m["cached"] for m in again["modules"].values())
    assert again["area_um2"] == lean["area_um2"]


def test_liberty_under_tmp_is_found(tmp_path):
    # The WebAssembly Yosys maps a folder of its own over /tmp: a clone under /tmp (as .ci/run
    # makes) must still reach its Liberty. tmp_path is under /tmp on Linux.
    lib = tmp_path / "pdk" / LIBERTY.name
    lib.parent.mkdir()
    shutil.copy(LIBERTY, lib)
    here = synthesize(HIER_V, "top", liberty=LIBERTY, work_dir=tmp_path / "a")
    there = synthesize(HIER_V, "top", liberty=lib, work_dir=tmp_path / "b")
    assert there["area_um2"] == here["area_um2"] > 0
