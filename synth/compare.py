"""The comparisons of the area report, each built from registered blocks with stated parameters.

Every comparison returns a dictionary ``{"title", "claim", "configuration", "available",
"rows", "notes"}``; a block or parameter that does not exist (yet) makes it
``available: False`` with the reason, never an exception.

Analog ADC area model (module-level ADC comparison)
---------------------------------------------------
A SAR ADC's area is dominated by its binary-weighted capacitor DAC, which doubles with each
bit; the comparator and SAR logic are small. We take ISAAC's published 8-bit, 1.2 GS/s SAR
ADC (Shafiee et al., ISCA 2016, Table 6: 0.0012 mm^2 in 32 nm, from Kull et al., ISSCC 2013)
and scale it by ``2**(bits - 8)``: 300 um^2 at 6 bits, 600 um^2 at 7 bits. For the module
level we take HyFlexPIM's analog PIM module in which the ADC is 64.2% of the area (HyFlexPIM
Table 2, as quoted by its reviewers), with the module sized for a 6-bit ADC: the rest of the
module (crossbar, DACs, S&H, drivers) is ``A_adc(6) * (1 - 0.642) / 0.642``, the same for
every variant. The digital controller area comes from synthesis with the given Liberty and
is scaled to the analog numbers' 32 nm node by ``(32 / node)**2`` (ideal scaling; ``node`` is
130 nm for IHP SG13G2, set ``SYNTH_LIBERTY_NODE_NM`` for another PDK).
"""

import concurrent.futures
import os

__all__ = ["COMPARISONS", "adc_area_um2", "run_comparisons"]

ISAAC_ADC_8BIT_UM2 = 1200.0     # 0.0012 mm^2, ISAAC Table 6 (32 nm)
HYFLEXPIM_ADC_SHARE = 0.642     # ADC share of the analog PIM module area, HyFlexPIM Table 2
ADC_MODEL_NODE_NM = 32.0


def digital_scale():
    """Area factor from the Liberty's node to the ADC model's 32 nm (ideal scaling)."""
    node = float(os.environ.get("SYNTH_LIBERTY_NODE_NM", "130"))
    return (ADC_MODEL_NODE_NM / node) ** 2


def adc_area_um2(bits):
    """Analog SAR ADC area model: ISAAC's 8-bit ADC scaled by ``2**(bits - 8)``."""
    return ISAAC_ADC_8BIT_UM2 * 2.0 ** (bits - 8)


def _param_names(block):
    return [p.name for p in block.params]


def _pick(block, *candidates):
    names = _param_names(block)
    for c in candidates:
        if c in names:
            return c
    return None


def _unavailable(result, reason):
    result["available"] = False
    result["notes"].append(f"not available: {reason}")
    return result


def _new(title, claim, configuration):
    return {"title": title, "claim": claim, "configuration": configuration,
            "available": True, "rows": [], "notes": []}


def _row(label, params, rep, **extra):
    row = {"configuration": label, "parameters": params,
           "cells": rep["cells"]["total"], "transistors": rep["transistors"],
           "area_um2": rep["area_um2"], "seq_area_um2": rep["seq_area_um2"],
           "depth": rep["depth"]}
    row.update(extra)
    return row


def _metric(rep):
    """Area in um^2 with a Liberty, else the transistor estimate (the rows say which)."""
    return rep["area_um2"] if rep["area_um2"] is not None else float(rep["transistors"])


def _pct(a, b):
    return None if not b else round(100.0 * (a - b) / b, 2)


def _prefetch(run, block, configs):
    """Synthesize ``configs`` of ``block`` concurrently when ``run`` is thread-safe (a
    :class:`synth.__main__.Runner`, which remembers its results); errors show up later when
    the comparison asks for the same configuration again."""
    if getattr(run, "reports", None) is None or len(configs) < 2:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(configs)) as ex:
        for f in [ex.submit(run, block, params) for params in configs]:
            try:
                f.result()
            except Exception:
                pass


def compare_adc(run, blocks):
    """Reconfigurable 6/7-bit SAR-ADC controller against fixed 6-bit and fixed 7-bit."""
    res = _new("SAR-ADC controller: reconfigurable 6/7-bit vs fixed",
               "HyFlexPIM: reconfigurable 6/7-bit SAR-ADC at <1% area overhead (whole chip)",
               "")
    b = blocks.get("sar_adc_controller")
    if b is None:
        return _unavailable(res, "block sar_adc_controller is not registered")
    if _pick(b, "resolutions") is None or _pick(b, "max_bits") is None:
        return _unavailable(res, "sar_adc_controller has no max_bits/resolutions parameters")
    variants = [("fixed 6-bit", {"max_bits": 6, "resolutions": (6,)}, 6),
                ("fixed 7-bit", {"max_bits": 7, "resolutions": (7,)}, 7),
                ("reconfigurable 6/7-bit", {"max_bits": 7, "resolutions": (6, 7)}, 7)]
    columns = next(p.default for p in b.params if p.name == "columns") \
        if "columns" in _param_names(b) else None
    res["configuration"] = (f"sar_adc_controller, columns={columns} (other parameters at "
                            f"defaults); analog ADC model: ISAAC 8-bit SAR ADC "
                            f"{ISAAC_ADC_8BIT_UM2:g} um^2 x 2^(bits-8); module: ADC = "
                            f"{HYFLEXPIM_ADC_SHARE:.1%} of a 6-bit analog PIM module "
                            f"(HyFlexPIM Table 2); one ADC + one controller per module; "
                            f"digital area scaled to 32 nm by (32/node)^2")
    reps = {}
    _prefetch(run, "sar_adc_controller", [params for _, params, _ in variants])
    for label, params, adc_bits in variants:
        rep = run("sar_adc_controller", params)
        reps[label] = (rep, adc_bits)
    base_ctrl = _metric(reps["fixed 6-bit"][0])
    rest = adc_area_um2(6) * (1 - HYFLEXPIM_ADC_SHARE) / HYFLEXPIM_ADC_SHARE
    have_area = reps["fixed 6-bit"][0]["area_um2"] is not None
    scale = digital_scale()
    base_module = rest + adc_area_um2(6) + base_ctrl * scale
    for label, params, adc_bits in variants:
        rep, bits = reps[label]
        ctrl = _metric(rep)
        extra = {"controller_vs_fixed6_pct": _pct(ctrl, base_ctrl),
                 "controller_vs_fixed7_pct": _pct(ctrl, _metric(reps["fixed 7-bit"][0]))}
        if have_area:
            module = rest + adc_area_um2(bits) + ctrl * scale
            extra.update(adc_model_um2_32nm=adc_area_um2(bits),
                         controller_um2_32nm=round(ctrl * scale, 1),
                         module_um2_32nm=round(module, 1),
                         module_vs_fixed6_pct=_pct(module, base_module))
        res["rows"].append(_row(label, params, rep, **extra))
    if not have_area:
        res["notes"].append("no Liberty: controller compared in transistors; module level "
                            "needs a Liberty")
    else:
        res["notes"].append(f"module = rest of the analog module {rest:.0f} um^2 + ADC model + "
                            f"controller x {scale:.4f} (digital area scaled to 32 nm)")
    res["notes"].append("the reconfigurable design needs a 7-bit-capable analog ADC: at module "
                        "level it is compared with the fixed 6-bit module (its denominator), "
                        "at controller level with both fixed controllers")
    return res


def hier_metric(rep, module):
    """Area (or transistor-free cell count without a Liberty) of one instance of ``module``
    including its submodules, from a report's ``modules`` table."""
    mods = rep["modules"]
    key = "area_um2" if rep["area_um2"] is not None else "cells"
    m = mods[module]
    return (m.get(key) or 0) + sum(n * hier_metric(rep, c) for c, n in
                                   m.get("submodules", {}).items() if c in mods)


def _dequant_share(rep, label, res, match="dequantizer"):
    top = rep["module"]
    mods = [m for m in rep["modules"] if m != top and m.split(".")[-1].startswith(match)]
    if not mods:
        return False
    # Count the instances of the matching modules (outermost ones only).
    inner = {c for m in mods for c in rep["modules"][m].get("submodules", {})}
    part = sum(rep["modules"][m]["instances"] * hier_metric(rep, m) for m in mods
               if m not in inner)
    total = hier_metric(rep, top)
    unit = "um^2" if rep["area_um2"] is not None else "generic cells"
    res["rows"].append(_row(f"{label} (whole)", rep["parameters"], rep))
    res["rows"].append({"configuration": f"{label} without {', '.join(mods)}",
                        "parameters": rep["parameters"], "cells": None, "transistors": None,
                        "area_um2": round(total - part, 1) if unit == "um^2" else None,
                        "seq_area_um2": None, "depth": {},
                        "dequant_" + ("um2" if unit == "um^2" else "cells"): round(part, 1),
                        "overhead_pct": _pct(total, total - part),
                        "share_pct": round(100.0 * part / total, 2) if total else None})
    return True


def compare_dequant(run, blocks):
    """Tile periphery with and without the dequantizer and its scale registers."""
    res = _new("Tile periphery with and without dequantizer + scale registers",
               "Atleus: crossbar-level dequantization costs 2.15% area (whole ReRAM tile)", "")
    tile = blocks.get("pim_tile")
    flag = _pick(tile, "dequantize", "dequant", "with_dequant", "dequantizer") if tile else None
    if tile is not None and flag is not None:
        res["configuration"] = f"pim_tile at its defaults, {flag}=True vs {flag}=False"
        with_d = run("pim_tile", {flag: True})
        without = run("pim_tile", {flag: False})
        res["rows"].append(_row(f"{flag}=False", {flag: False}, without))
        res["rows"].append(_row(f"{flag}=True", {flag: True}, with_d,
                                overhead_pct=_pct(_metric(with_d), _metric(without)),
                                share_pct=round(100 * (_metric(with_d) - _metric(without))
                                                / _metric(with_d), 2)))
        res["notes"].append("denominator: the digital tile without the dequantizer "
                            "(overhead_pct) and with it (share_pct); crossbars, DACs and ADCs "
                            "are analog and not in the netlist, so Atleus' whole-tile "
                            "denominator is larger")
        return res
    for name in ("pim_tile", "shift_add_dequantizer"):
        if name in blocks:
            rep = run(name, {})
            if _dequant_share(rep, name, res):
                res["configuration"] = (
                    f"{name} at its defaults; without = the same design minus every "
                    f"dequantizer instance (its shift-and-add scale multipliers, rounding and "
                    f"saturation, and its scale registers when it owns them; scale registers "
                    f"kept outside the dequantizer stay on the 'without' side)")
                res["notes"].append(
                    f"denominator: the digital {name} with the dequantizers (share_pct) and "
                    f"without them (overhead_pct); Atleus' 2.15% is of a whole ReRAM tile "
                    f"including crossbars, DACs and ADCs, a much larger denominator, so the "
                    f"digital-only share is an upper bound")
                lean = sorted(m for m, how in rep.get("mapping", {}).items()
                              if str(how).startswith("lean"))
                if lean:
                    res["notes"].append(
                        f"{', '.join(lean)} got the lean mapping, whose area is an upper bound "
                        f"(pim_tile at its defaults mapped once with the full flow everywhere: "
                        f"12.38 mm^2 against 13.13 mm^2 lean; its top +5%, "
                        f"shift_add_accumulator +11%), so the denominator is high and "
                        f"share_pct low by up to ~6%")
                return res
    return _unavailable(res, "no pim_tile and no shift_add_dequantizer with a dequantizer "
                             "module registered")


def compare_systolic(run, blocks):
    """Systolic array 128x32 against 64x64 and 32x128 (same PE count), area per PE."""
    res = _new("Systolic array shapes at 4096 PEs", "Atleus: 128x32 output-stationary cores", "")
    b = blocks.get("systolic_array")
    if b is None:
        return _unavailable(res, "block systolic_array is not registered")
    rows = _pick(b, "rows", "height", "n_rows")
    cols = _pick(b, "cols", "columns", "width", "n_cols")
    if rows is None or cols is None:
        return _unavailable(res, "systolic_array has no rows/cols parameters")
    res["configuration"] = f"systolic_array, {rows} x {cols}, other parameters at defaults"
    shapes = ((128, 32), (64, 64), (32, 128))
    _prefetch(run, "systolic_array", [{rows: r, cols: c} for r, c in shapes])
    for r, c in shapes:
        params = {rows: r, cols: c}
        rep = run("systolic_array", params)
        per_pe = None if rep["area_um2"] is None else round(rep["area_um2"] / (r * c), 2)
        res["rows"].append(_row(f"{r}x{c}", params, rep, pes=r * c, area_per_pe_um2=per_pe,
                                transistors_per_pe=round(rep["transistors"] / (r * c))))
    res["notes"].append("drain='auto' drains along the shorter side, so 32x128 builds the same "
                        "128-wide x 32-deep core as 128x32 with A and B swapped at the input: "
                        "equal areas are expected, not a coincidence. The per-row de-skew "
                        "registers grow with the square of the output vector width (128*127/2 "
                        "words at 128x32, 64*63/2 at 64x64), hence 64x64's smaller area")
    return res


def compare_router(run, blocks):
    """NoC router area by port count (5, 7, with skip links) and virtual-channel count."""
    res = _new("NoC router by ports and virtual channels",
               "Atleus: skip-tier links add little NoC area (4% for the whole NoC)", "")
    b = blocks.get("noc_router")
    if b is None:
        return _unavailable(res, "block noc_router is not registered")
    names = _param_names(b)
    if not {"ports", "vcs"} <= set(names):
        return _unavailable(res, "noc_router has no ports/vcs parameters")
    defaults = {p.name: p.default for p in b.params}
    has_table = "routing" in names and "dims" in names
    res["configuration"] = ("noc_router; 5 ports = 2D mesh (dims 4x4), 7 ports = 3D mesh "
                            "(dims 4x4x4), 8 ports = 3D mesh + one skip-tier link (table "
                            "routing: DOR has no skip port); VC sweep at 5 ports; other "
                            f"parameters at defaults (vcs={defaults.get('vcs')}, "
                            f"buffer={defaults.get('buffer')}, "
                            f"payload_width={defaults.get('payload_width')})")
    configs = [("5 ports (2D mesh, DOR)", {"ports": 5, "dims": (4, 4)}),
               ("7 ports (3D mesh, DOR)", {"ports": 7, "dims": (4, 4, 4)})]
    if has_table:
        configs += [("7 ports (3D mesh, table)", {"ports": 7, "routing": "table",
                                                   "dims": (4, 4, 4)}),
                    ("8 ports (3D mesh + skip link, table)",
                     {"ports": 8, "routing": "table", "dims": (4, 4, 4)})]
    configs += [(f"5 ports, {v} VC", {"ports": 5, "dims": (4, 4), "vcs": v}) for v in (1, 2, 4)
                if v != defaults.get("vcs")]
    base = None
    configs = [(label, {k: v for k, v in params.items() if k in names})
               for label, params in configs]
    _prefetch(run, "noc_router", [params for _, params in configs])
    for label, params in configs:
        try:
            rep = run("noc_router", params)
        except (TypeError, ValueError) as e:
            res["notes"].append(f"{label}: {e}")
            continue
        if base is None:
            base = _metric(rep)
        res["rows"].append(_row(label, params, rep, vs_5_ports_pct=_pct(_metric(rep), base)))
    if not res["rows"]:
        return _unavailable(res, "no router configuration could be built")
    return res


COMPARISONS = {"adc": compare_adc, "dequant": compare_dequant, "systolic": compare_systolic,
               "router": compare_router}


def run_comparisons(run, blocks, names=None, log=None, parallel=False):
    """Run the comparisons; ``run(block_name, params) -> report`` does the synthesis.

    ``parallel``: run the comparisons in threads (``run`` must then be thread-safe, as
    :class:`synth.__main__.Runner` is; it limits the Yosys processes itself).
    """
    def one(name, fn):
        try:
            result = fn(run, blocks)
        except Exception as e:   # a block under construction must not stop the report
            result = _unavailable(_new(fn.__doc__.strip().splitlines()[0], "", ""),
                                  f"{type(e).__name__}: {e}")
        if log:
            log(f"comparison {name}: "
                + ("done" if result["available"] else result["notes"][-1]))
        return result

    todo = [(name, fn) for name, fn in COMPARISONS.items() if names is None or name in names]
    if not parallel:
        return {name: one(name, fn) for name, fn in todo}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(todo))) as ex:
        futures = {name: ex.submit(one, name, fn) for name, fn in todo}
        return {name: f.result() for name, f in futures.items()}
