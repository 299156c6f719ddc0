"""The cycle model of the chip RTL (:class:`hdl.chip.AtleusChip`) running a compiled program
(:mod:`golden.chip_program`), and its reconciliation with :func:`golden.chip.time_model`.

:func:`schedule` is a discrete-event model of the chip executing a
:class:`golden.chip_program.Program` in one clock domain (``REGRESSION_CHIP``: tiles, systolic
cores and NoC at one clock, so every figure is in the chip's cycles):

- The host (at node 0, ``hdl.chip.CoreNode``'s host port) offers its vectors (writes and
  commands) in program order, one per cycle when nothing stalls it. A vector for another
  node goes through node 0's network-interface packetizer (``1 + B`` flits, ``B =
  ceil(16 L / flit_bits)``: one vector per ``1 + B`` cycles); a vector for node 0 itself takes
  the loopback (one per cycle). Node 0's systolic core shares that send path with the host,
  vector by vector, round robin (the shell's ``StreamMerge``, whose grant is held while the
  chosen vector waits).
- A packet's head leaves the packetizer 1 cycle after its vector is accepted and crosses each
  link of its :func:`golden.noc.path` route in ``ROUTER_CYCLES + LINK_CYCLES`` cycles; each
  link and each ejection port carries one packet at a time (``1 + B`` cycles per packet: the
  per-link serialization of whole packets, not flit-level wormhole interleaving; router
  buffers and credits are not modelled). At zero load this is exactly
  :func:`golden.network_interface.stream_cycles` from the sender's ``i`` to the receiver's
  ``o``.
- At the destination, the receive demux takes one vector per cycle (network and loopback);
  a memory write is counted by the fence ``write_latency`` cycles later, a command reaches
  the head of the node's command queue ``cmd_latency`` cycles later (:class:`ScheduleTiming`
  ``cmd_depth``: a full queue holds the demux; :attr:`Schedule.max_queued` reports the most
  commands a node held, the shell's ``cmd_depth`` the program needs), a host-window vector
  reaches ``host_o`` ``host_latency`` cycles later.
- Each core runs its commands in order: a command starts when it is at the head of the
  queue, its fence is met (the node has counted at least ``wait`` writes) and the previous
  command has finished. Durations: systolic commands from
  :func:`golden.systolic_core.command_cycles` (cycle-exact for the core alone, no ``wr``
  traffic: memory-port conflicts with concurrent writes are not modelled); PIM ``CONFIG`` 2
  cycles (accept, write; the tile assumed idle); PIM ``SEND`` one word per 2 cycles;
  PIM ``MVM`` as :class:`hdl.pim_tile.PimCore`'s measured latency, word ``j`` of token ``k``
  offered ``mvm_cycles + sum N_OUTPUTS + D + 3 j + k * interval`` cycles after the start
  (:func:`pim_mvm_timing`: ``D`` and ``interval`` are a model of the measured values, see
  there). Every word a command sends is offered to its node's send path; while the
  packetizer is busy the core stalls (a systolic ``SEND`` of ``count`` words to another node
  takes about ``count (1 + B)`` cycles, not ``count + 3``); a command ends one cycle after
  its last word is accepted.
- A :class:`~golden.chip_program.HostStep` resumes the host when every word of its reads has
  reached ``host_o`` (``host_poll``: the host looks every ``host_poll`` cycles, as
  ``tb.env.chip_layer.run_program`` does with 64).

The schedule depends on the program's shapes only: the host steps run on a copy of the
program's steps with all-zero reads (the number of words and the fences do not depend on the
values), so scheduling leaves the program as it was. A program whose host steps have already
run (:func:`golden.chip_program.execute`) carries their write counts into a second run (its
later fences are too high): schedule a fresh one.

Not modelled: router buffers and credits (packets are serialized per link, never stalled by
a full buffer downstream), memory-port conflicts between a core's commands and concurrent
``wr`` traffic, the upstream stall of a full command queue beyond the node's own demux,
idle cycles of the host's driver.

:func:`reconcile` sets :func:`golden.chip.time_model` of the same configuration beside the
schedule, operation by operation, with the reason for each difference.
"""

import copy
import heapq
import re
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from . import noc, pim_core, systolic_core
from .chip_program import HOST_FIRST, Command, HostStep, Program, Read, Write, chip_ni

__all__ = ["ScheduleTiming", "CommandTime", "Schedule", "schedule", "reconcile", "phase_of",
           "pim_mvm_timing", "PHASES", "TIME_MODEL_OPS"]

#: The phases of the breakdown, in layer order (:func:`phase_of` names each command's).
PHASES = ("config", "barrier", "x->sys", "qkv", "lora fwd", "attention", "ctx->wo", "wo", "ln1",
          "->ff1", "ff1", "gelu", "->ff2", "ff2", "ln2", "y->host", "lora bwd", "other")


@dataclass(frozen=True)
class ScheduleTiming:
    """The shell's latencies and the host's behaviour (cycles).

    Parameters
    ----------
    write_latency : int
        The vector's transfer on the interface's ``o`` (the receive demux, combinational to
        ``wr``) -> the write counted by the fence (the counter's register).
    cmd_latency : int
        Receive demux -> the command at the head of the node's command queue (the shell's
        unbuffered ``Queue``: on its ``o`` the next cycle).
    host_latency : int
        Receive demux -> the host sees the vector (``host_o`` is combinational from the
        demux).
    loop_latency : int
        A looped-back vector: accepted from the core -> at the receive demux.
    host_poll : int
        The host checks its reads every ``host_poll`` cycles from the cycle it resumed last
        (cycle 0 at first): its vectors are queued to the port's driver at once, so it
        starts waiting for a step's reads when it resumed from the previous step (1: it sees
        them as soon as they are in; ``tb.env.chip_layer.run_program``: 64).
    links : bool
        Serialize packets on each link and ejection port (False: every packet at zero load).
    cmd_depth : int or None
        The shell's command queue (``CoreNode(cmd_depth=)``): a command vector that finds it
        full holds the node's receive demux, and every vector behind it (writes too), until
        the head command starts. Only the node's own receive side stalls here; the upstream
        stall (the interface's ejection, and at node 0 the loopback and the host's send
        merge) is not modelled, so a program that needs more than ``cmd_depth`` may deadlock
        in the RTL even where it only slows down here. None: unbounded (then
        :attr:`Schedule.max_queued` gives the depth the program needs).
    """
    write_latency: int = 1
    cmd_latency: int = 1
    host_latency: int = 0
    loop_latency: int = 1
    host_poll: int = 1
    links: bool = True
    cmd_depth: int = None


@dataclass
class CommandTime:
    """One command's schedule: ``arrive`` (at the head of its node's queue), ``fence``
    (the cycle its node had counted ``wait`` writes), ``start`` and ``end`` (the next
    command's earliest start), ``sent`` (words it sent)."""
    index: int
    label: str
    node: int
    kind: str
    phase: str
    wait: int
    arrive: int = -1
    fence: int = 0
    start: int = -1
    end: int = -1
    sent: int = 0
    word: int = field(default=0, repr=False)

    @property
    def cycles(self):
        return self.end - self.start


@dataclass
class Schedule:
    """Result of :func:`schedule`.

    Members
    -------
    total_cycles : int
        From the host's first vector (cycle 0) to the last word the host receives.
    commands : list of CommandTime
        Every command (the host steps' too), in the order they were issued.
    busy : dict
        ``{node: cycles}`` its core spent executing commands.
    phases : dict
        ``{phase: {"commands", "busy", "start", "end"}}`` (:data:`PHASES` order).
    host : dict
        ``vectors`` (sent by the host), ``last_vector`` (cycle its last vector was accepted),
        ``steps`` (``[(label, reads_in, resume)]`` per host step), ``last_receive``.
    max_queued : dict
        ``{node: most commands waiting at once}`` (arrived, not started): the shell's
        ``cmd_depth`` the program needs to run without stalling a node's receive side.
    stalls : dict
        ``{node: times its receive demux stalled on a full command queue}`` (with
        ``timing.cmd_depth``).
    write_times : dict
        ``{node: [cycle of each counted write]}``.
    """
    total_cycles: int
    commands: list
    busy: dict
    phases: dict
    host: dict
    max_queued: dict
    write_times: dict
    stalls: dict = field(default_factory=dict)
    timing: ScheduleTiming = field(default_factory=ScheduleTiming)

    def breakdown(self):
        """``{phase: span cycles}`` (end - start of the phase's commands; host steps: the
        time the host waited for their reads)."""
        out = {p: v["end"] - v["start"] for p, v in self.phases.items()}
        out["host steps"] = sum(r - max(i, 0) for _, i, r in self.host["steps"])
        return out


def phase_of(label):
    """The phase of a command from its :class:`~golden.chip_program.Command` label."""
    rules = [(r"^config ", "config"), (r"^barrier$", "barrier"), (r"^x->sys$", "x->sys"),
             (r"^[qkv]'? = x W[qkv]", "qkv"), (r"^[TD]_\w+ = ", "lora fwd"),
             (r"^\w+ = sat\(D \+", "lora fwd"), (r"^[SPC]_\d+ = ", "attention"),
             (r"^ctx->wo$", "ctx->wo"), (r"^o = C Wo", "wo"),
             (r"^(r1 = o \+ x|gamma1|beta1|h = LayerNorm)", "ln1"), (r"^h->ff1$", "->ff1"),
             (r"^f1 = h W1", "ff1"), (r"^g = GELU", "gelu"), (r"^g->ff2$", "->ff2"),
             (r"^f2 = g W2", "ff2"), (r"^(r2 = f2 \+ h|gamma2|beta2|y = LayerNorm)", "ln2"),
             (r"^y -> host$", "y->host"), (r"^d(A|B|T|Tacc)_\w+", "lora bwd")]
    for pat, ph in rules:
        if re.match(pat, label):
            return ph
    return "other"


# ------------------------------------------------------------------------------ PIM timing

def _tile_interval(tile, crossbar_bits):
    """The tile's vector interval: :func:`golden.pim_tile.mvm_cycles`, plus one cycle when
    the busiest group's shift-and-add is within a cycle of the ADC sweep (the RTL's
    measured 2057 against 2056 at ``REGRESSION_TILE``: a model of that measurement)."""
    from .pim_tile import mvm_cycles
    base = mvm_cycles(tile, crossbar_bits)
    if not crossbar_bits:
        return 0
    adc = max(1 + tile.columns_per_adc * b for b in crossbar_bits.values())
    groups = {}
    for x in crossbar_bits:
        groups[x // tile.group] = groups.get(x // tile.group, 0) + tile.cols
    busiest = max(groups.values())
    return base + (1 if adc - 1 <= busiest <= adc else 0)


def pim_mvm_timing(tile, mappings, out_cols, length):
    """``(first, interval, word_gap)`` of a PIM ``MVM`` over the tiles ``mappings``
    (``[TileMapping]``): word ``j`` of token ``k`` is offered ``first + word_gap j + k
    interval`` cycles after the command starts (no backpressure).

    ``first = max mvm_cycles + sum N_OUTPUTS + D`` with ``D = 15 + 12 max N_BLOCKS + 2 (sum
    N_BLOCKS - max N_BLOCKS)``: the PimCore docstring's measured ``D`` (27 with one row block,
    39 with two, one tile); the multi-tile and longer-row terms (the feeder's 2 cycles per
    row block of the other tiles) are a model, not measured. ``interval = max(tile interval,
    sum N_OUTPUTS + 3 ceil(out_cols / L))`` (:func:`_tile_interval`; collection and drain
    must fit). ``word_gap = 3`` (the drain's address, requantize, offer phases).
    """
    from .pim_tile import mvm_cycles
    n_out = sum(m.n_outputs for m in mappings)
    blocks = [m.n_blocks for m in mappings]
    mvm = max(mvm_cycles(tile, m.crossbar_bits) for m in mappings)
    d = 15 + 12 * max(blocks) + 2 * (sum(blocks) - max(blocks))
    ow = -(-out_cols // length)
    interval = max(max(_tile_interval(tile, m.crossbar_bits) for m in mappings), n_out + 3 * ow)
    return mvm + n_out + d, interval, 3


# ------------------------------------------------------------------------------ the simulator

class _Sim:
    def __init__(self):
        self.heap, self.seq, self.now = [], 0, 0

    def at(self, t, fn, prio=0):
        self.seq += 1
        heapq.heappush(self.heap, (t, prio, self.seq, fn))

    def run(self):
        while self.heap:
            t, _, _, fn = heapq.heappop(self.heap)
            self.now = t
            fn()


class _Vector:
    __slots__ = ("dest", "offset", "what", "payload")

    def __init__(self, dest, offset, what, payload=None):
        self.dest, self.offset, self.what, self.payload = dest, offset, what, payload


class _Chip:
    def __init__(self, program, timing):
        self.prog, self.tm = program, timing
        chip = program.chip
        self.ni = chip_ni(chip)
        self.P = self.ni.flits_per_packet
        self.L = self.ni.length
        self.sim = _Sim()
        self.topo, self.table = chip.network()
        self.link_free, self.eject_free = {}, {}
        self.senders, self.nodes = {}, {}
        self.routes = {}

    # -- send path of a node: sources "core" and "host" merged round robin
    def sender(self, node):
        if node not in self.senders:
            self.senders[node] = {"offers": {}, "free": 0, "pk_free": 0, "loop_free": 0,
                                  "last": None, "kicks": set()}
        return self.senders[node]

    def offer(self, node, src, ready, vec, on_accept):
        s = self.sender(node)
        s["offers"][src] = (ready, vec, on_accept)
        self._kick(node, max(ready, s["free"], self.sim.now))

    def _kick(self, node, t):
        s = self.sender(node)
        if t in s["kicks"]:
            return
        s["kicks"].add(t)
        self.sim.at(t, lambda: self._arbitrate(node, t), prio=1)

    def _arbitrate(self, node, t):
        s = self.sender(node)
        s["kicks"].discard(t)
        if not s["offers"]:
            return
        if t < s["free"]:
            self._kick(node, s["free"])
            return
        ready = [k for k in ("core", "host") if k in s["offers"] and s["offers"][k][0] <= t]
        if not ready:
            self._kick(node, min(v[0] for v in s["offers"].values()))
            return
        src = ready[0] if len(ready) == 1 or s["last"] != ready[0] else ready[1]
        _, vec, cb = s["offers"].pop(src)
        local = vec.dest == node
        if local:
            a = max(t, s["loop_free"])
            s["loop_free"] = a + 1
        else:
            a = max(t, s["pk_free"])
            s["pk_free"] = a + self.P
        s["free"] = a + 1
        s["last"] = src
        if local:
            self.sim.at(a + self.tm.loop_latency, lambda: self._receive(node, vec))
        else:
            self.sim.at(self._network(node, vec.dest, a), lambda: self._receive(vec.dest, vec))
        cb(a)
        if s["offers"]:
            self._kick(node, max(s["free"], min(v[0] for v in s["offers"].values())))

    def _network(self, src, dst, a):
        """Delivery cycle at ``dst``'s interface ``o`` of a vector accepted at ``a``."""
        key = (src, dst)
        if key not in self.routes:
            self.routes[key] = noc.path(self.topo, self.table, src, dst)
        route = self.routes[key]
        hop = noc.ROUTER_CYCLES + noc.LINK_CYCLES
        t = a + 1
        for u, v in zip(route, route[1:]):
            t += hop
            if self.tm.links:
                t = max(t, self.link_free.get((u, v), 0))
                self.link_free[(u, v)] = t + self.P
        t += noc.ROUTER_CYCLES + noc.EJECT_CYCLES
        if self.tm.links:
            t = max(t, self.eject_free.get(dst, 0))
            self.eject_free[dst] = t + self.P
        return t + self.P

    # -- receive side
    def node(self, n):
        if n not in self.nodes:
            self.nodes[n] = {"queue": deque(), "writes": 0, "write_times": [], "free": 0,
                             "running": None, "demux_free": 0, "entries": 0, "max_queued": 0,
                             "busy": 0, "held": deque(), "stalls": 0}
        return self.nodes[n]

    def _receive(self, n, vec):
        nd = self.node(n)
        depth = self.tm.cmd_depth
        if nd["held"] or (vec.what == "cmd" and depth is not None and nd["entries"] >= depth):
            if not nd["held"]:
                nd["stalls"] += 1
            nd["held"].append(vec)          # the demux waits for a free entry
            return
        r = max(self.sim.now, nd["demux_free"])
        nd["demux_free"] = r + 1
        if vec.what == "cmd":
            nd["entries"] += 1
        if vec.what == "write":
            self.sim.at(r + self.tm.write_latency, lambda: self._write(n))
        elif vec.what == "cmd":
            self.sim.at(r + self.tm.cmd_latency, lambda: self._enqueue(n, vec.payload))
        else:
            self.sim.at(r + self.tm.host_latency, lambda: self.host.received(vec.offset))

    def _write(self, n):
        nd = self.node(n)
        nd["writes"] += 1
        nd["write_times"].append(self.sim.now)
        self._try_start(n)

    def _enqueue(self, n, ct):
        nd = self.node(n)
        ct.arrive = self.sim.now
        nd["queue"].append(ct)
        nd["max_queued"] = max(nd["max_queued"], len(nd["queue"]))
        self._try_start(n)

    def _try_start(self, n):
        nd = self.node(n)
        if nd["running"] is not None or not nd["queue"]:
            return
        ct = nd["queue"][0]
        if nd["writes"] < ct.wait:
            return
        now = self.sim.now
        if now < nd["free"]:
            self.sim.at(nd["free"], lambda: self._try_start(n))
            return
        nd["queue"].popleft()
        nd["entries"] -= 1
        if nd["held"]:                      # a free entry: the demux goes on
            held = list(nd["held"])
            nd["held"].clear()
            for vec in held:
                self._receive(n, vec)
        nd["running"] = ct
        ct.fence = nd["write_times"][ct.wait - 1] if ct.wait else 0
        ct.start = now
        self._execute(n, ct)

    def _finish(self, n, ct, end):
        nd = self.node(n)
        ct.end = end
        nd["free"] = end
        nd["busy"] += end - ct.start
        nd["running"] = None
        self.sim.at(end, lambda: self._try_start(n))

    # -- command execution
    def _vector(self, dest, offset):
        if dest == 0 and HOST_FIRST <= offset < (1 << self.ni.offset_bits) - 1:
            return _Vector(dest, offset, "host")
        return _Vector(dest, offset, "write")

    def _emit(self, n, ct, words, end_extra=1):
        """Offer ``words`` (``[(nominal ready, gap after the previous accept, dest,
        offset)]``) from node ``n``'s core in order; the command ends ``end_extra`` after the
        last accept."""
        words = list(words)
        state = {"j": 0, "prev": None}

        def next_offer():
            j = state["j"]
            nominal, gap, dest, off = words[j]
            ready = nominal if state["prev"] is None else max(nominal, state["prev"] + gap)
            self.offer(n, "core", ready, self._vector(dest, off), accepted)

        def accepted(a):
            state["prev"] = a
            state["j"] += 1
            ct.sent += 1
            if state["j"] == len(words):
                self._finish(n, ct, a + end_extra)
            else:
                next_offer()

        next_offer()

    def _execute(self, n, ct):
        t0 = ct.start
        if ct.kind == "systolic":
            cfg = self.prog.sys_cfg[n]
            c = systolic_core.decode_command(cfg, ct.word)
            total = systolic_core.command_cycles(cfg, ct.word)
            core = systolic_core.Core(cfg)
            if not core.check(c):
                raise RuntimeError(f"the systolic core at node {n} refuses command {ct.label!r}")
            b = c["body"]
            if c["op"] == 2:
                words = [(t0 + 2 + j, 1, c["dest"], c["dest_addr"] + j) for j in range(b["count"])]
                return self._emit(n, ct, words)
            if c["dest"] != cfg.node and not (c["op"] == 1 and b["cmd"]["fn"] > 3):
                if c["op"] == 0:
                    _, _, (cr, cc) = systolic_core._gemm_shapes(b)
                    span = systolic_core.matrix_words(cr, cc, b["c_ld"], cfg.length, b["c_col"])
                else:
                    n_, r = b["cmd"]["length"], b["rows"]
                    orr, oc = (n_, r) if b["out_t"] else (r, n_)
                    span = systolic_core.matrix_words(orr, oc, b["out_ld"], cfg.length)
                local = total - (span + 1)
                words = [(t0 + local + 1 + j, 1, c["dest"], c["dest_addr"] + j)
                         for j in range(span)]
                return self._emit(n, ct, words)
            return self._finish(n, ct, t0 + total)
        pcfg = self.prog.pim_cfg[n]
        c = pim_core.decode_command(pcfg, ct.word)
        op = pim_core.Op(c["op"])
        if op == pim_core.Op.CONFIG:
            return self._finish(n, ct, t0 + 2)
        if op == pim_core.Op.SEND:
            words = [(t0 + 2 + 2 * j, 2, c["dest"], c["dest_addr"] + j) for j in range(c["tokens"])]
            return self._emit(n, ct, words)
        maps = [self.tile_maps[(n, k)] for k in range(pcfg.tiles) if (c["mask"] >> k) & 1]
        first, interval, gap = pim_mvm_timing(pcfg.tile, maps, c["out_cols"], self.L)
        ow = -(-c["out_cols"] // self.L)
        if not c["to_o"]:
            return self._finish(n, ct, t0 + first + gap * (ow - 1) + (c["tokens"] - 1) * interval + 1)
        words = [(t0 + first + gap * j + k * interval, gap, c["dest"],
                  c["dest_addr"] + k * ow + j) for k in range(c["tokens"]) for j in range(ow)]
        return self._emit(n, ct, words)


class _Host:
    def __init__(self, chip, steps, poll):
        self.chip, self.queue, self.poll = chip, deque(steps), poll
        self.time = 0
        self.origin = 0               # the cycle the host last resumed (its polls count from it)
        self.reads = {}
        self.got = {}
        self.pending = deque()        # vectors of the current step
        self.waiting = None
        self.vectors = 0
        self.last_vector = 0
        self.steps = []
        self.commands = []

    def need(self, names):
        L = self.chip.L
        out = set()
        for name in names:
            rd = self.reads[name]
            cols = rd.cols * (2 if rd.wide else 1)
            out |= {rd.addr + j for j in range(rd.rows * -(-cols // L))}
        return out

    def received(self, offset):
        self.got[offset] = self.chip.sim.now
        if self.waiting is not None and self.waiting[1] <= self.got.keys():
            st, _ = self.waiting
            self.waiting = None
            self._resume(st)

    def _resume(self, st):
        need = self.need(st.needs)
        reads_in = max(self.got[o] for o in need)
        wait = max(0, reads_in - self.origin)
        resume = max(self.time, self.origin + -(-wait // self.poll) * self.poll)
        self.steps.append((st.label, reads_in, resume))
        self.time = self.origin = resume
        L = self.chip.L
        zeros = {}
        for name in st.needs:
            rd = self.reads[name]
            zeros[name] = np.zeros((rd.rows, rd.cols), dtype=np.int64)
        more, _ = st.fn(zeros)
        self.queue.extendleft(reversed(list(more)))
        self.chip.sim.at(resume, self.advance)

    def advance(self):
        """Offer the next vector, or take the next step."""
        while not self.pending:
            if not self.queue:
                return
            st = self.queue.popleft()
            if isinstance(st, Write):
                for k in range(len(st.words)):
                    self.pending.append(_Vector(st.node, st.addr + k, "write"))
            elif isinstance(st, Command):
                ct = CommandTime(len(self.commands), st.label, st.node, st.kind,
                                 phase_of(st.label), st.wait, word=st.word)
                self.commands.append(ct)
                self.pending.append(_Vector(st.node, (1 << self.chip.ni.offset_bits) - 1,
                                            "cmd", ct))
            elif isinstance(st, Read):
                self.reads[st.name] = st
            elif isinstance(st, HostStep):
                if self.need(st.needs) <= self.got.keys():
                    self._resume(st)
                else:
                    self.waiting = (st, self.need(st.needs))
                return
            else:
                raise TypeError(f"program step must be Write, Command, Read or HostStep, not {st!r}")
        vec = self.pending.popleft()
        self.chip.offer(0, "host", max(self.time, self.chip.sim.now), vec, self._accepted)

    def _accepted(self, a):
        self.vectors += 1
        self.last_vector = a
        self.time = a + 1
        self.chip.sim.at(a + 1, self.advance)


def schedule(program, *, timing=None):
    """The cycle schedule of ``program`` on its chip (see the module docstring).

    Parameters
    ----------
    program : golden.chip_program.Program
    timing : ScheduleTiming or None
        The shell's latencies and the host's polling (default :class:`ScheduleTiming`).

    Returns
    -------
    Schedule

    Raises ``RuntimeError`` when a command never runs (its fence is never met: the program
    sends fewer words to its node than it waits for) or a systolic command is refused.
    """
    if not isinstance(program, Program):
        raise TypeError(f"program must be a golden.chip_program.Program, not {program!r}")
    timing = ScheduleTiming() if timing is None else timing
    if not isinstance(timing, ScheduleTiming):
        raise TypeError(f"timing must be a ScheduleTiming or None, not {timing!r}")
    if not isinstance(timing.host_poll, int) or timing.host_poll < 1:
        raise TypeError(f"timing.host_poll must be a positive integer, not {timing.host_poll!r}")
    if timing.cmd_depth is not None and (not isinstance(timing.cmd_depth, int)
                                         or timing.cmd_depth < 1):
        raise TypeError(f"timing.cmd_depth must be a positive integer or None, not "
                        f"{timing.cmd_depth!r}")
    chip = _Chip(program, timing)
    chip.tile_maps = {(node, slot): mapping for vs in program.tiles.values()
                      for node, slot, _, _, _, mapping, _ in vs}
    # Host steps share state (the compiler's write counts): copy the steps once, together.
    host = chip.host = _Host(chip, copy.deepcopy(program.steps), timing.host_poll)
    chip.sim.at(0, host.advance)
    chip.sim.run()
    stuck = [c for c in host.commands if c.end < 0]
    if stuck or host.queue or host.pending or host.waiting:
        what = "; ".join(f"{c.label!r} at node {c.node} (wait {c.wait}, node counted "
                         f"{chip.node(c.node)['writes']})" for c in stuck[:4])
        held = {n: len(v["held"]) for n, v in chip.nodes.items() if v["held"]}
        raise RuntimeError(f"the program does not finish: {len(stuck)} commands never ran"
                           + (f": {what}" if what else "")
                           + (f"; receive demux held on a full command queue (cmd_depth "
                              f"{timing.cmd_depth}) at nodes {held}" if held else "")
                           + ("; the host waits for reads that never come" if host.waiting else ""))
    every = host.need(list(host.reads))
    missing = every - host.got.keys()
    if missing:
        raise RuntimeError(f"the host never receives {len(missing)} words of its reads "
                           f"(first offset {min(missing):#x})")
    last = max((host.got[o] for o in every), default=host.last_vector)
    wait = max(0, last - host.origin)
    total = host.origin + -(-wait // timing.host_poll) * timing.host_poll if every else last
    phases = {}
    for p in PHASES:
        cs = [c for c in host.commands if c.phase == p]
        if cs:
            phases[p] = {"commands": len(cs), "busy": sum(c.cycles for c in cs),
                         "start": min(c.start for c in cs), "end": max(c.end for c in cs)}
    return Schedule(total_cycles=total, commands=host.commands,
                    busy={n: v["busy"] for n, v in sorted(chip.nodes.items())},
                    phases=phases,
                    host={"vectors": host.vectors, "last_vector": host.last_vector,
                          "steps": host.steps, "last_receive": last},
                    max_queued={n: v["max_queued"] for n, v in sorted(chip.nodes.items())},
                    write_times={n: v["write_times"] for n, v in sorted(chip.nodes.items())},
                    stalls={n: v["stalls"] for n, v in sorted(chip.nodes.items())},
                    timing=timing)


# ------------------------------------------------------------------------------ reconciliation

#: time_model's operations of one layer, with the schedule's phases that do the same work
#: and the reason they differ.
TIME_MODEL_OPS = {
    "in": ((), "RTL: the host writes x into the QKV core over the NoC (part of the host's "
                "vector stream); model: from HBM at 256 GB/s"),
    "qkv": (("qkv",), "RTL: one MVM per target (q', k, v' with their own shifts): 3 passes of "
                      "n tokens at the tile's 2057-cycle interval (model 2056) plus the first "
                      "token's latency; model: one pass of the (d, 3d) matrix"),
    "x->sys": (("x->sys",), "RTL: PIM SEND, n*d/L vectors of 1+B flits (header, 16-bit "
                            "elements); model: 8-bit bytes / flit_bits, no headers"),
    "hbm:lora_w": ((), "RTL: the host writes A, B before the barrier (phase 'config'/host)"),
    "lora_fwd": (("lora fwd",), "RTL: starts after all of q', k, v' (each fence counts every "
                                "word sent to the core before it); adds sat(D + q') per target "
                                "on the nonlinear unit; A read as M x K (one element per cycle)"),
    "qkv->sys": ((), "RTL: inside qkv (each token's row leaves the PIM core as it drains, "
                     "hidden behind the next token)"),
    "attention": (("attention",), "RTL: softmax on one NonlinearUnit, 3n+78 cycles per row "
                                  "(h n rows), model ceil(h n^2 / nl_lanes); GEMMs with the "
                                  "core's fetch and write-back layouts"),
    "lora_bwd": (("lora bwd",), "RTL: after y in program order, each result sent to the host; "
                                "dA after the host's dT shift step"),
    "hbm:lora_state": ((), "RTL: the gradients go to the host port (in 'lora bwd')"),
    "ctx->wo": (("ctx->wo",), "RTL: systolic SEND, n*d/L vectors of 1+B flits"),
    "wo": (("wo",), "RTL: n tokens at 2057 (model 2056) plus the first token's latency"),
    "ln1": (("ln1",), "RTL: residual ADD, gamma/beta loads and LayerNorm on the systolic core's "
                      "nonlinear unit, 1 element/cycle; model: 2 n d / nl_lanes on W^O's core, "
                      "no residual add"),
    "->ff1": (("->ff1",), "RTL: h goes back from the systolic core to the W^F1 core; model: "
                          "LN1 on W^O's core, which also holds W^F1 (0)"),
    "ff1": (("ff1",), "RTL: 4-tile MVM (2057/token) plus f1's left-shift ADD on the systolic "
                      "core (n rows of d_ff)"),
    "ff1->gelu": ((), "model (gelu_on='systolic'): f1 to the systolic core; RTL: inside ff1"),
    "gelu": (("gelu",), "RTL: GELU on the systolic core, 1 element/cycle; model: "
                        "n d_ff / nl_lanes on the W^F1 core"),
    "->ff2": (("->ff2",), "RTL: g from the systolic core, n*d_ff/L vectors of 1+B flits; "
                          "model: bytes / flit_bits, no headers"),
    "ff2": (("ff2",), "RTL: MVM (2057/token) plus f2's left-shift ADD on the systolic core"),
    "ff2->ln2": ((), "model (ln2_on='systolic'): f2 to the systolic core; RTL: inside ff2"),
    "ln2": (("ln2",), "RTL: residual ADD, loads and LayerNorm on the systolic core, 1 "
                      "element/cycle; model: 2 n d / nl_lanes on the W^F2 core, no residual"),
}

#: Work the RTL does that time_model does not time.
RTL_ONLY = {
    "config": "host: CONFIG commands of every tile, one 1+B-flit vector each (time_model: "
              "weights are resident)",
    "barrier": "host: the systolic core echoes one word once the host's writes are in",
    "y->host": "y to the host window (loopback at node 0)",
    "host": "host vectors and host steps outside the phases above (writes, waits)",
}


def reconcile(program, sched):
    """:func:`golden.chip.time_model` of ``program``'s layer on its chip beside ``sched``
    (:func:`schedule` of the same program), operation by operation.

    Returns ``{"rows": [...], "rtl_only": [...], "model_cycles", "schedule_cycles",
    "variants": {...}}``: each row ``{"op", "model_cycles", "model_start", "model_end",
    "phases", "schedule_cycles" (span of the phases' commands), "schedule_busy",
    "schedule_start", "schedule_end", "difference", "reason"}``; ``rtl_only``: the schedule's
    phases with no time_model operation; ``variants``: time_model's layer latency with the
    RTL's choices, ``{"as configured", "nl_lanes=1", "gelu_on=ln2_on='systolic'",
    "both"}``; ``nonlinear``: the schedule's systolic ``NL`` cycles by function (softmax,
    layernorm, gelu, add, load_gamma, load_beta).
    """
    from .chip import map_model, time_model
    if not isinstance(program, Program):
        raise TypeError(f"program must be a golden.chip_program.Program, not {program!r}")
    if not isinstance(sched, Schedule):
        raise TypeError(f"sched must be a Schedule, not {sched!r}")
    chip, cfg = program.chip, program.layer.cfg
    tm = time_model(map_model(cfg, chip))
    f = chip.f_systolic
    rows = []
    for op in tm.ops:
        phases, reason = TIME_MODEL_OPS.get(op.name, ((), "not mapped"))
        ph = [sched.phases[p] for p in phases if p in sched.phases]
        row = {"op": op.name, "model_cycles": round(op.duration * f),
               "model_start": round(op.start * f), "model_end": round(op.end * f),
               "phases": list(phases)}
        if ph:
            s0, s1 = min(p["start"] for p in ph), max(p["end"] for p in ph)
            row.update(schedule_cycles=s1 - s0, schedule_busy=sum(p["busy"] for p in ph),
                       schedule_start=s0, schedule_end=s1)
        else:
            row.update(schedule_cycles=0, schedule_busy=0, schedule_start=None,
                       schedule_end=None)
        row["difference"] = row["schedule_cycles"] - row["model_cycles"]
        row["reason"] = reason
        rows.append(row)
    rtl_only = []
    covered = {p for ps, _ in TIME_MODEL_OPS.values() for p in ps}
    for p, v in sched.phases.items():
        if p not in covered:
            rtl_only.append({"phase": p, "schedule_cycles": v["end"] - v["start"],
                             "schedule_busy": v["busy"], "reason": RTL_ONLY.get(p, "")})
    steps = sched.host["steps"]
    rtl_only.append({"phase": "host steps", "schedule_cycles": sum(r - i for _, i, r in steps),
                     "schedule_busy": 0,
                     "reason": "the host's waits beyond its reads' arrival (host_poll)"})
    gelu_sys = replace(cfg, gelu_on="systolic", ln2_on="systolic")
    chip1 = replace(chip, nl_lanes=1)
    variants = {
        "as configured": tm.layer_latency_cycles,
        "nl_lanes=1": time_model(map_model(cfg, chip1)).layer_latency_cycles,
        "gelu_on=ln2_on='systolic'": time_model(map_model(gelu_sys, chip)).layer_latency_cycles,
        "both": time_model(map_model(gelu_sys, chip1)).layer_latency_cycles,
    }
    nonlinear = {}
    names = {v: k.lower() for k, v in systolic_core.NL_FUNCTIONS.items()}
    for c in sched.commands:
        if c.kind == "systolic":
            d = systolic_core.decode_command(program.sys_cfg[c.node], c.word)
            if d["op"] == 1:
                fn = names.get(d["body"]["cmd"]["fn"], "other")
                nonlinear[fn] = nonlinear.get(fn, 0) + c.cycles
    return {"rows": rows, "rtl_only": rtl_only, "model_cycles": tm.layer_latency_cycles,
            "schedule_cycles": sched.total_cycles, "variants": variants,
            "nonlinear": nonlinear}


def main(argv=None):
    """``python -m golden.chip_schedule``: the regression layer's schedule, its breakdown and
    the reconciliation with time_model, as text (``--json``: as JSON)."""
    import argparse
    import json
    parser = argparse.ArgumentParser(prog="python -m golden.chip_schedule",
                                     description=main.__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--host-poll", type=int, default=1)
    args = parser.parse_args(argv)
    from .chip import REGRESSION_LAYER, REGRESSION_TILE
    from .chip_program import layer_program
    from .transformer import EncoderLayer, random_weights
    # tb.env.chip_layer.regression_case(): the layer the chip tests run
    cfg = REGRESSION_LAYER
    layer = EncoderLayer(cfg, random_weights(cfg, 0), tile=REGRESSION_TILE, seed=1)
    rng = np.random.default_rng(0)
    xf = rng.standard_normal((cfg.seq_len, cfg.d_model))
    layer.calibrate(xf)
    x = layer.quantize_input(xf)
    grads = {t: (rng.integers(-128, 128, (cfg.seq_len, cfg.d_model)), 10)
             for t in cfg.lora_targets}
    prog = layer_program(layer, x, grads)
    sched = schedule(prog, timing=ScheduleTiming(host_poll=args.host_poll))
    rec = reconcile(prog, sched)
    out = {"total_cycles": sched.total_cycles, "breakdown": sched.breakdown(),
           "phases": sched.phases, "busy": sched.busy, "max_queued": sched.max_queued,
           "host": {k: v for k, v in sched.host.items()}, "reconcile": rec}
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return
    print(f"schedule: {sched.total_cycles} cycles; time_model: {rec['model_cycles']}")
    print(f"busy per node: {sched.busy}; most commands queued: {sched.max_queued}")
    print(f"{'phase':12s} {'span':>8s} {'busy':>8s} {'start':>8s} {'end':>8s}")
    for p, v in sched.phases.items():
        print(f"{p:12s} {v['end'] - v['start']:8d} {v['busy']:8d} {v['start']:8d} {v['end']:8d}")
    print(f"host steps: {sched.host['steps']}")
    spans = sum(v["end"] - v["start"] for v in sched.phases.values())
    print(f"sum of phase spans {spans}, the rest (host writes, NoC latencies between phases) "
          f"{sched.total_cycles - spans}")
    print(f"systolic nonlinear unit by function: {rec['nonlinear']}")
    print(f"\n{'op':15s} {'model':>7s} {'sched':>7s} {'diff':>7s}  reason")
    for r in rec["rows"]:
        print(f"{r['op']:15s} {r['model_cycles']:7d} {r['schedule_cycles']:7d} "
              f"{r['difference']:7d}  {r['reason']}")
    for r in rec["rtl_only"]:
        print(f"{'+' + r['phase']:15s} {0:7d} {r['schedule_cycles']:7d} "
              f"{r['schedule_cycles']:7d}  {r['reason']}")
    print(f"\ntime_model variants (layer latency): {rec['variants']}")


if __name__ == "__main__":
    main()
