"""Logic depth and critical-path estimate of each module of a Yosys JSON netlist.

Paths start at module inputs, flip-flop outputs and outputs of submodule instances, and end
at module outputs, flip-flop inputs and inputs of submodule instances: each module is timed
on its own (the hierarchy is kept), so a registered cell such as a PE or a router is timed
completely, while a combinational path that crosses a module boundary is cut there.

``levels`` counts the combinational cells on the longest path (generic Yosys gates, every
gate one level). ``delay_ns`` (only with a Liberty) sums the nominal arc delays of the mapped
cells along the slowest path, starting with the launching flip-flop's clock-to-Q delay (see
:mod:`synth.liberty` for the delay model; no wire load, no setup time).
"""

__all__ = ["module_depths"]


def _is_generic_seq(cell_type):
    return cell_type.startswith("$_") and any(
        k in cell_type for k in ("DFF", "DLATCH", "SR_", "ALDFF", "FF_"))


def _module_depth(module, liberty, module_names):
    cells = module.get("cells", {})
    driver = {}     # bit -> (cell name, output pin)
    seq_out = {}    # bit -> launch delay
    comb = {}       # cell name -> (inputs: list of (pin, bits), delay model)
    for name, cell in cells.items():
        ctype = cell["type"]
        dirs = cell.get("port_directions", {})
        conns = cell.get("connections", {})
        lib_cell = liberty.cells.get(ctype) if liberty is not None else None
        if ctype in module_names or ctype.startswith("$mem") or ctype.startswith("$__") or (
                lib_cell is None and _is_generic_seq(ctype)) or (
                lib_cell is not None and lib_cell.sequential):
            launch = 0.0
            if lib_cell is not None:
                launch = max((d for (a, b), d in lib_cell.arcs.items()
                              if a in lib_cell.clock_pins), default=0.0)
            for pin, bits in conns.items():
                direction = dirs.get(pin) or (lib_cell.pins.get(pin) if lib_cell else None)
                if direction is None and (pin.startswith("RD_DATA") or pin in ("Q", "Y")):
                    direction = "output"
                if direction == "output":
                    for b in bits:
                        if isinstance(b, int):
                            seq_out[b] = launch
            continue
        outputs, inputs = [], []
        for pin, bits in conns.items():
            direction = dirs.get(pin)
            if direction is None and lib_cell is not None:
                direction = lib_cell.pins.get(pin)
            if direction is None:
                direction = "output" if pin in ("Y", "Q", "X") else "input"
            (outputs if direction == "output" else inputs).append((pin, bits))
        comb[name] = (inputs, lib_cell)
        for pin, bits in outputs:
            for b in bits:
                if isinstance(b, int):
                    driver[b] = (name, pin)

    memo = {}   # cell output (name, pin) -> (levels, delay)

    def bit_arrival(b):
        if not isinstance(b, int):
            return (0, 0.0)
        if b in seq_out:
            return (0, seq_out[b])
        d = driver.get(b)
        if d is None:
            return (0, 0.0)
        return memo.get(d)

    # Iterative DFS over cell outputs (no recursion limit on long carry chains); a
    # combinational loop is cut where it closes.
    worst = (0, 0.0)
    visiting = set()
    for start in list(driver.values()):
        if start in memo:
            continue
        stack = [start]
        while stack:
            node = stack[-1]
            if node in memo:
                stack.pop()
                continue
            inputs, lib_cell = comb[node[0]]
            if node not in visiting:
                visiting.add(node)
                pending = [driver[b] for pin, bits in inputs for b in bits
                           if isinstance(b, int) and b not in seq_out and b in driver
                           and driver[b] not in memo and driver[b] not in visiting]
                if pending:
                    stack.extend(pending)
                    continue
            levels, delay = 0, 0.0
            for pin, bits in inputs:
                arc = 0.0
                if lib_cell is not None:
                    arc = lib_cell.arcs.get((pin, node[1]), 0.0)
                for b in bits:
                    arrival = bit_arrival(b) or (0, 0.0)
                    levels = max(levels, arrival[0])
                    delay = max(delay, arrival[1] + arc)
            memo[node] = (levels + 1, delay)
            visiting.discard(node)
            stack.pop()
    for value in memo.values():
        worst = (max(worst[0], value[0]), max(worst[1], value[1]))
    return worst


def module_depths(netlist, liberty=None, module_names=()):
    """``{module: {"levels": int, "delay_ns": float or None}}`` for a Yosys ``write_json`` netlist.

    Blackbox modules (Liberty cells) are skipped. Instances of the modules in the netlist and
    of ``module_names`` (submodules synthesized separately) are path end points.
    """
    modules = {name: m for name, m in netlist["modules"].items()
               if not int(str(m.get("attributes", {}).get("blackbox", "0")), 2 if set(
                   str(m.get("attributes", {}).get("blackbox", "0"))) <= {"0", "1"} else 10)}
    result = {}
    for name, module in modules.items():
        levels, delay = _module_depth(module, liberty, set(modules) | set(module_names))
        result[name] = {"levels": levels,
                        "delay_ns": round(delay, 3) if liberty is not None else None}
    return result
