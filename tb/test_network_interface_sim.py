# amaranth: UnusedElaboratable=no
"""NetworkInterface in the Amaranth simulator against :mod:`golden.network_interface`: the
flits of random vectors, reassembly with unexpected and malformed packets, a loop-back of
packetizer into depacketizer, the timing contract, extreme widths, reset in mid-packet and
parameter errors."""

import random

import pytest
from amaranth import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from golden.network_interface import (MAX_COUNT, ErrorKind, Expect, NiConfig, depacketize,
                                      dest_bits_for, flit_fields, flit_word, packetize,
                                      tag_word, transfer_flits)
from hdl.noc.network_interface import NetworkInterface, NiErrorKind
from hdl.noc.router import dest_bits_for as hdl_dest_bits_for
from tb.env.network_interface import (bad_tag, config_item, random_tag, random_vector,
                                      send_item)
from tb.packing import pack, unpack
from tb.sim_streams import stream_get, stream_put

# name -> NetworkInterface parameters (B = body flits)
CONFIGS = {
    "default": dict(payload_width=32, elem_width=8, length=6),                     # B = 2
    "length1": dict(payload_width=32, elem_width=8, length=1),                     # B = 1
    "elem_eq_payload": dict(payload_width=16, elem_width=16, length=3, layer_bits=4,
                            stage_bits=4, offset_bits=8),                          # B = 3
    "elem_gt_payload": dict(payload_width=12, elem_width=40, length=2, layer_bits=2,
                            stage_bits=2, offset_bits=8),                          # B = 7
    "not_dividing": dict(payload_width=13, elem_width=5, length=7, layer_bits=3,
                         stage_bits=2, offset_bits=8, nodes=300),                  # B = 3
    "tiny": dict(payload_width=3, elem_width=1, length=1, layer_bits=1, stage_bits=1,
                 offset_bits=1, nodes=2),                                          # B = 1
}


def _config(params):
    return NiConfig(**params)


def _expect(rng, cfg):
    omax = (1 << cfg.offset_bits) - 1
    first = rng.randint(0, omax)
    last = rng.randint(first, omax)
    return Expect(layer=rng.randrange(1 << cfg.layer_bits),
                  stage=rng.randrange(1 << cfg.stage_bits), first=first, last=last)


def _word(value):
    return value.as_value().value if hasattr(value, "as_value") else int(value)


def _received(ni, value):
    item = unpack(ni.o.payload.shape(), _word(value))
    t = item["tag"]
    return (t["layer"], t["stage"], t["offset"]), list(item["data"])


def _errors(ni):
    """A reader of the error outputs."""
    async def read(ctx):
        return {"error": ctx.get(ni.error), "errors": ctx.get(ni.errors),
                "kind": ctx.get(ni.last_error.as_value()) & 3,
                "tag": ctx.get(ni.last_error.tag.as_value())}
    return read


def _run(top, benches, *, read=None, background=(), cycles=20_000):
    """Run ``benches`` until all return (failing if they have not after ``cycles``); then,
    three cycles later, ``read(ctx)``'s result is returned."""
    finished = []
    result = {}

    def wrap(bench):
        async def run(ctx):
            await bench(ctx)
            finished.append(bench)
        return run

    async def final(ctx):
        for _ in range(cycles):
            if len(finished) == len(benches):
                break
            await ctx.tick()
        else:
            return
        for _ in range(3):
            await ctx.tick()
        if read is not None:
            result.update(await read(ctx))
        finished.append(final)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(wrap(bench), background=True)
    for bench in background:
        sim.add_testbench(bench, background=True)
    sim.add_testbench(final)
    sim.run()
    assert final in finished, f"not done after {cycles} cycles: {len(finished)} of " \
                              f"{len(benches)} benches finished"
    return result


class Collector:
    """A consumer testbench: takes ``count`` items from ``stream`` with random stalls."""

    def __init__(self, stream, count, rng, stall):
        self.stream, self.count, self.rng, self.stall = stream, count, rng, stall
        self.items = []

    async def __call__(self, ctx):
        while len(self.items) < self.count:
            stall = 0
            while self.rng.random() < self.stall:
                stall += 1
            self.items.append(await stream_get(ctx, self.stream, stall=stall))


def _idle(rng, p):
    n = 0
    while rng.random() < p:
        n += 1
    return n


def _sender(stream, payloads, rng, idle, *, before=None):
    async def bench(ctx):
        if before is not None:
            await before(ctx)
        for p in payloads:
            await stream_put(ctx, stream, p, idle=_idle(rng, idle))
    return bench


def _configure(ni, items):
    async def bench(ctx):
        for item in items:
            await stream_put(ctx, ni.cfg, pack(ni.cfg.payload.shape(), item))
    return bench


# -- golden model ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CONFIGS))
def test_golden_round_trip(name):
    cfg = _config(CONFIGS[name])
    rng = random.Random(1)
    exp = _expect(rng, cfg)
    assert cfg.flits_per_packet == 1 + -(-cfg.length * cfg.elem_width // cfg.payload_width)
    flits, sent = [], []
    for _ in range(20):
        tag, vec = random_tag(rng, cfg, exp), random_vector(rng, cfg)
        dest = rng.randrange(cfg.nodes)
        packet = packetize(cfg, dest, tag, vec)
        assert len(packet) == cfg.flits_per_packet
        assert [f[:3] for f in packet] == [(1, 0, dest)] + [(0, 0, dest)] * (cfg.body_flits - 1) \
            + [(0, 1, dest)]
        assert packet[0][3] == tag_word(cfg, tag) < 1 << cfg.payload_width
        assert all(0 <= f[3] < 1 << cfg.payload_width for f in packet)
        for f in packet:
            assert flit_fields(cfg, flit_word(cfg, f)) == f
        flits += packet
        sent.append((tag, vec))
    out, errors, _ = depacketize(cfg, flits, exp)
    assert out == sent and errors == []
    assert dest_bits_for(cfg.nodes) == hdl_dest_bits_for(cfg.nodes)


def test_golden_elements_lsb_first():
    """Element k sits at bits [k E, (k+1) E) of the body; the last flit is zero-padded."""
    cfg = NiConfig(payload_width=8, elem_width=3, length=4, layer_bits=2, stage_bits=2,
                   offset_bits=4)
    flits = packetize(cfg, 5, (1, 2, 3), [1, 2, 3, 4])
    body = sum(f[3] << (8 * j) for j, f in enumerate(flits[1:]))
    assert body == 1 | 2 << 3 | 3 << 6 | 4 << 9 and flits[0][3] == 1 | 2 << 2 | 3 << 4
    assert len(flits) == 1 + 2 and flits[-1][3] >> 4 == 0


def test_golden_error_rules():
    cfg = NiConfig(payload_width=8, elem_width=8, length=2, layer_bits=2, stage_bits=2,
                   offset_bits=4)
    exp = Expect(layer=1, stage=2, first=3, last=5)
    good = packetize(cfg, 0, (1, 2, 4), [7, 9])
    head, b1, b2 = good
    cases = [
        (packetize(cfg, 0, (1, 2, 6), [1, 1]), ErrorKind.TAG),     # offset above last
        (packetize(cfg, 0, (0, 2, 4), [1, 1]), ErrorKind.TAG),     # layer
        ([(1, 1, 0, head[3])], ErrorKind.LENGTH),                  # header only
        ([head, (0, 1, 0, 1)], ErrorKind.LENGTH),                  # early tail
        ([head, b1, (0, 0, 0, 1), (0, 1, 0, 2)], ErrorKind.LENGTH),  # too long
        ([head, head, b1, b2], ErrorKind.LENGTH),                  # head inside a packet
        ([b1, b2], ErrorKind.ORPHAN),
    ]
    for flits, kind in cases:
        out, errors, st = depacketize(cfg, flits + good, exp)
        assert [e.kind for e in errors] == [kind] and out == [((1, 2, 4), [7, 9])], flits
        assert st["mode"] == "idle"
    assert depacketize(cfg, good)[1][0].kind == ErrorKind.TAG     # nothing expected after reset


def test_error_kinds_match_golden():
    assert {k.name: k.value for k in NiErrorKind} == {k.name: int(k) for k in ErrorKind}


def test_transfer_flits():
    assert transfer_flits(64, payload_width=32, vector_bytes=32) == 2 * (1 + 8)
    assert transfer_flits(65, payload_width=32, vector_bytes=32) == 3 * (1 + 8)
    assert transfer_flits(0, payload_width=32, vector_bytes=32) == 0


# -- packetizer ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CONFIGS))
def test_packetize_random(name):
    """Random vectors, idle cycles on ``i`` and backpressure on ``inject``: the flits equal
    the golden packets."""
    ni = NetworkInterface(**CONFIGS[name])
    cfg = ni.config
    rng = random.Random(hash(name) & 0xFFFF)
    sends = [(rng.randrange(1 << cfg.dest_bits), random_tag(rng, cfg, _expect(rng, cfg)),
              random_vector(rng, cfg)) for _ in range(50)]
    expected = [flit_word(cfg, f) for s in sends for f in packetize(cfg, *s)]
    layout = ni.i.payload.shape()
    out = Collector(ni.inject, len(expected), random.Random(2), 0.4)
    _run(ni, [_sender(ni.i, [pack(layout, send_item(*s)) for s in sends], random.Random(3), 0.4),
              out])
    assert [_word(v) for v in out.items] == expected


# -- depacketizer ----------------------------------------------------------------------------

def _mixed_flits(rng, cfg, exp, n):
    """Good packets, unexpected tags and malformed packets, in random order."""
    flits = []
    for _ in range(n):
        r = rng.random()
        dest = rng.randrange(cfg.nodes)
        vec = random_vector(rng, cfg)
        if r < 0.55:
            flits += packetize(cfg, dest, random_tag(rng, cfg, exp), vec)
        elif r < 0.8:
            flits += packetize(cfg, dest, bad_tag(rng, cfg, exp), vec)
        else:
            p = packetize(cfg, dest, random_tag(rng, cfg, exp), vec)
            kind = rng.randrange(4)
            if kind == 0:
                p = [(1, 1, dest, p[0][3])]                              # header only
            elif kind == 1:
                p = p[1:]                                                # orphan body
            elif kind == 2:
                p = p[:-1] + [(0, 0, dest, p[-1][3]), (0, 1, dest, 0)]   # one flit too many
            elif len(p) > 2:
                p = p[:-2] + [(0, 1, dest, p[-2][3])]                    # tail too early
            else:
                p = [p[0], p[0]] + p[1:]                                 # head inside
            flits += p
    return flits


@pytest.mark.parametrize("name", list(CONFIGS))
def test_depacketize_random(name):
    """Good, unexpected and malformed packets with idle cycles on ``eject`` and backpressure
    on ``o``: the vectors, the error count and the last error equal the golden model's, and
    dropped packets never block later ones."""
    ni = NetworkInterface(**CONFIGS[name])
    cfg = ni.config
    rng = random.Random(hash(name) & 0xFFFF)
    exp = _expect(rng, cfg)
    flits = _mixed_flits(rng, cfg, exp, 80)
    out, errors, _ = depacketize(cfg, flits, exp)
    assert out and errors
    recv = Collector(ni.o, len(out), random.Random(5), 0.5)
    sender = _sender(ni.eject, [flit_word(cfg, f) for f in flits], random.Random(6), 0.3,
                     before=_configure(ni, [config_item(exp)]))
    state = _run(ni, [sender, recv], read=_errors(ni))
    assert [_received(ni, v) for v in recv.items] == out
    assert state == {"error": 1, "errors": len(errors), "kind": int(errors[-1].kind),
                     "tag": tag_word(cfg, errors[-1].tag)}


@pytest.mark.parametrize("name", ["default", "not_dividing"])
def test_reconfigure_and_clear(name):
    """A ``cfg`` write changes the expectation for the heads that follow it; ``clear``
    clears the flag, the count and the last error."""
    ni = NetworkInterface(**CONFIGS[name])
    cfg = ni.config
    rng = random.Random(7)
    exp1, exp2 = _expect(rng, cfg), _expect(rng, cfg)
    seg1, seg2 = _mixed_flits(rng, cfg, exp1, 15), _mixed_flits(rng, cfg, exp2, 15)
    out1, err1, st = depacketize(cfg, seg1, exp1)
    out2, err2, _ = depacketize(cfg, seg2, exp2, state=st)
    assert err1 and err2
    layout = ni.cfg.payload.shape()
    flits_rng = random.Random(8)

    async def sender(ctx):
        await stream_put(ctx, ni.cfg, pack(layout, config_item(exp1)))
        for f in seg1:
            await stream_put(ctx, ni.eject, flit_word(cfg, f), idle=_idle(flits_rng, 0.2))
        await stream_put(ctx, ni.cfg, pack(layout, config_item(exp2, clear=True)))
        for f in seg2:
            await stream_put(ctx, ni.eject, flit_word(cfg, f), idle=_idle(flits_rng, 0.2))

    recv = Collector(ni.o, len(out1) + len(out2), random.Random(9), 0.3)
    state = _run(ni, [sender, recv], read=_errors(ni))
    assert [_received(ni, v) for v in recv.items] == out1 + out2
    assert state == {"error": 1, "errors": len(err2), "kind": int(err2[-1].kind),
                     "tag": tag_word(cfg, err2[-1].tag)}

    async def clear_only(ctx):
        await stream_put(ctx, ni.cfg, pack(layout, config_item(exp1)))
        await stream_put(ctx, ni.eject, flit_word(cfg, packetize(cfg, 0, bad_tag(rng, cfg, exp1),
                                                                 random_vector(rng, cfg))[0]))
        await stream_put(ctx, ni.cfg, pack(layout, config_item(clear=True)))
    assert _run(ni, [clear_only], read=_errors(ni)) == {"error": 0, "errors": 0, "kind": 0,
                                                        "tag": 0}


# -- both halves -----------------------------------------------------------------------------

def _loopback(ni):
    """``inject`` wired to ``eject``: the node sends to itself."""
    m = Module()
    m.submodules.ni = ni
    wiring.connect(m, ni.inject, ni.eject)
    return m


def _stream_rule_checker(streams, violations):
    """Per cycle: once ``valid`` is high it stays high with the same payload until ``ready``."""
    async def check(ctx):
        signals = [x for s in streams for x in (s.valid, s.ready, s.payload.as_value())]
        held = [None] * len(streams)
        while True:
            _clk, _rst, *values = await ctx.tick().sample(*signals)
            for k in range(len(streams)):
                valid, ready, payload = values[3 * k:3 * k + 3]
                if held[k] is not None and (not valid or _word(payload) != held[k]):
                    violations.append((k, held[k]))
                held[k] = _word(payload) if valid and not ready else None
    return check


@pytest.mark.parametrize("name", ["default", "elem_gt_payload", "length1"])
def test_loopback(name):
    """Packetizer into depacketizer with random idle on ``i`` and backpressure on ``o``:
    the expected vectors come back in order, the others are counted as errors, and no
    stream breaks the valid/payload rule."""
    ni = NetworkInterface(**CONFIGS[name])
    cfg = ni.config
    rng = random.Random(11)
    exp = _expect(rng, cfg)
    sends = [(rng.randrange(cfg.nodes), random_tag(rng, cfg, exp) if rng.random() < 0.7 else
              bad_tag(rng, cfg, exp), random_vector(rng, cfg)) for _ in range(40)]
    out, errors, _ = depacketize(cfg, [f for s in sends for f in packetize(cfg, *s)], exp)
    assert out == [(t, v) for _, t, v in sends if exp.matches(t)]
    layout = ni.i.payload.shape()
    recv = Collector(ni.o, len(out), random.Random(12), 0.5)
    sender = _sender(ni.i, [pack(layout, send_item(*s)) for s in sends], random.Random(13), 0.3,
                     before=_configure(ni, [config_item(exp)]))
    violations = []
    top = _loopback(ni)
    sim_state = _run(top, [sender, recv], read=_errors(ni),
                     background=[_stream_rule_checker([ni.inject, ni.o], violations)])
    assert [_received(ni, v) for v in recv.items] == out
    assert sim_state["errors"] == len(errors) and sim_state["error"] == int(bool(errors))
    assert violations == []


@pytest.mark.parametrize("name", ["default", "elem_gt_payload", "length1"])
def test_timing_contract(name):
    """Without idle or backpressure: the header leaves 1 cycle after its vector is accepted,
    flits go back to back, a vector is accepted every ``1 + B`` cycles, and the vector is on
    ``o`` the cycle after its tail flit (loop-back: ``2 + B`` cycles in to out)."""
    ni = NetworkInterface(**CONFIGS[name])
    cfg = ni.config
    F = cfg.flits_per_packet
    rng = random.Random(14)
    exp = _expect(rng, cfg)
    n = 6
    sends = [(0, random_tag(rng, cfg, exp), random_vector(rng, cfg)) for _ in range(n)]
    layout = ni.i.payload.shape()
    log = {"in": [], "flit": [], "out": []}

    async def bench(ctx):
        await stream_put(ctx, ni.cfg, pack(layout_cfg, config_item(exp)))
        ctx.set(ni.o.ready, 1)
        pending = list(sends)
        for cycle in range(n * F + 10):
            if pending:
                ctx.set(ni.i.valid, 1)
                ctx.set(ni.i.payload.as_value(), pack(layout, send_item(*pending[0])))
            else:
                ctx.set(ni.i.valid, 0)
            if ctx.get(ni.i.valid) and ctx.get(ni.i.ready):
                log["in"].append(cycle)
                pending.pop(0)
            if ctx.get(ni.inject.valid) and ctx.get(ni.inject.ready):
                log["flit"].append(cycle)
                assert ctx.get(ni.eject.ready)
            if ctx.get(ni.o.valid):
                log["out"].append(cycle)
            await ctx.tick()

    layout_cfg = ni.cfg.payload.shape()
    _run(_loopback(ni), [bench])
    t0 = log["in"][0]
    assert log["in"] == [t0 + k * F for k in range(n)]
    assert log["flit"] == [t0 + 1 + k for k in range(n * F)]
    assert log["out"] == [t0 + 1 + F + k * F for k in range(n)]


@pytest.mark.parametrize("name", ["default", "elem_gt_payload"])
def test_reset_mid_packet(name):
    """Reset in mid-packet on both sides: the packetizer starts the next vector with a fresh
    header; the depacketizer drops the rest of the interrupted packet as an orphan (error
    state cleared by the reset, then one ORPHAN) and delivers the next packet."""
    ni = NetworkInterface(**CONFIGS[name])
    cfg = ni.config
    rst = Signal()
    m = Module()
    m.submodules.ni = ResetInserter(rst)(ni)
    rng = random.Random(15)
    exp = _expect(rng, cfg)
    a, b = [(3, random_tag(rng, cfg, exp), random_vector(rng, cfg)) for _ in range(2)]
    x, y = [packetize(cfg, 0, random_tag(rng, cfg, exp), random_vector(rng, cfg))
            for _ in range(2)]
    bad = packetize(cfg, 0, bad_tag(rng, cfg, exp), random_vector(rng, cfg))
    cut = 2                                 # flits of x and of a's packet before the reset
    layout, layout_cfg = ni.i.payload.shape(), ni.cfg.payload.shape()
    result = {}

    async def bench(ctx):
        await stream_put(ctx, ni.cfg, pack(layout_cfg, config_item(exp)))
        for f in bad + x[:cut]:
            await stream_put(ctx, ni.eject, flit_word(cfg, f))
        await stream_put(ctx, ni.i, pack(layout, send_item(*a)))
        got = [_word(await stream_get(ctx, ni.inject)) for _ in range(cut)]
        assert got == [flit_word(cfg, f) for f in packetize(cfg, *a)[:cut]]
        assert ctx.get(ni.errors) == 1 and ctx.get(ni.inject.valid)
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        result["after_reset"] = (ctx.get(ni.inject.valid), ctx.get(ni.o.valid), ctx.get(ni.errors),
                                 ctx.get(ni.error))
        await stream_put(ctx, ni.cfg, pack(layout_cfg, config_item(exp)))
        for f in x[cut:] + y:
            await stream_put(ctx, ni.eject, flit_word(cfg, f))
        await stream_put(ctx, ni.i, pack(layout, send_item(*b)))
        result["flits"] = [_word(await stream_get(ctx, ni.inject)) for _ in range(len(y))]
        result["vector"] = _received(ni, await stream_get(ctx, ni.o))
        result["errors"] = await _errors(ni)(ctx)

    _run(m, [bench])
    out, errors, _ = depacketize(cfg, x[cut:] + y, exp)
    assert result["after_reset"] == (0, 0, 0, 0)
    assert result["flits"] == [flit_word(cfg, f) for f in packetize(cfg, *b)]
    assert [result["vector"]] == out and [e.kind for e in errors] == [ErrorKind.ORPHAN]
    assert result["errors"] == {"error": 1, "errors": 1, "kind": int(ErrorKind.ORPHAN), "tag": 0}


# -- parameters ------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,exc,match", [
    (dict(payload_width=0), TypeError, r"payload_width must be an integer from 1 to 1024, not 0"),
    (dict(payload_width=2000), TypeError, r"payload_width must be an integer from 1 to 1024"),
    (dict(elem_width=0), TypeError, r"elem_width must be an integer from 1 to 1024, not 0"),
    (dict(elem_width=8.0), TypeError, r"elem_width must be an integer from 1 to 1024, not 8.0"),
    (dict(length=0), TypeError, r"length must be an integer from 1 to 4096, not 0"),
    (dict(nodes=0), TypeError, r"nodes must be an integer from 1 to 4096, not 0"),
    (dict(layer_bits=0), TypeError, r"layer_bits must be an integer from 1 to 16, not 0"),
    (dict(stage_bits=17), TypeError, r"stage_bits must be an integer from 1 to 16, not 17"),
    (dict(offset_bits=33), TypeError, r"offset_bits must be an integer from 1 to 32, not 33"),
    (dict(payload_width=16, layer_bits=4, stage_bits=4, offset_bits=9), ValueError,
     r"The tag \(layer_bits \+ stage_bits \+ offset_bits = 17 bits\) must fit the flit "
     r"payload \(payload_width = 16 bits\)"),
])
def test_parameter_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        NetworkInterface(**kw)


def test_golden_argument_errors():
    cfg = NiConfig(payload_width=16, elem_width=4, length=2, layer_bits=2, stage_bits=2,
                   offset_bits=4)
    with pytest.raises(TypeError, match=r"offset must be an integer from 0 to 15, not 16"):
        packetize(cfg, 0, (0, 0, 16), [0, 0])
    with pytest.raises(ValueError, match=r"vector element 1 must be from 0 to 15 \(elem_width "
                                         r"4\), not 16"):
        packetize(cfg, 0, (0, 0, 0), [0, 16])
    with pytest.raises(ValueError, match=r"vector must have length 2, not shape \(3,\)"):
        packetize(cfg, 0, (0, 0, 0), [0, 0, 0])
    with pytest.raises(TypeError, match=r"dest must be an integer from 0 to 255, not 256"):
        packetize(cfg, 256, (0, 0, 0), [0, 0])
    assert MAX_COUNT == (1 << 16) - 1


def test_error_count_saturates():
    """65537 one-flit packets with an unexpected tag, back to back: every one is taken in
    its cycle, and the count stops at 65535."""
    ni = NetworkInterface(**CONFIGS["tiny"])
    cfg = ni.config
    word = flit_word(cfg, (1, 1, 0, tag_word(cfg, (1, 1, 1))))   # nothing expected after reset
    state = {}

    async def bench(ctx):
        ctx.set(ni.eject.payload.as_value(), word)
        ctx.set(ni.eject.valid, 1)
        taken = 0
        for _ in range(MAX_COUNT + 2):
            taken += ctx.get(ni.eject.ready)
            await ctx.tick()
        ctx.set(ni.eject.valid, 0)
        state.update(await _errors(ni)(ctx), taken=taken)

    _run(ni, [bench], cycles=MAX_COUNT + 10)
    assert state == {"error": 1, "errors": MAX_COUNT, "kind": int(ErrorKind.TAG),
                     "tag": tag_word(cfg, (1, 1, 1)), "taken": MAX_COUNT + 2}
