"""Golden model of the network-on-chip: topologies, routing tables, deadlock check, timing.

Pure Python/NumPy (no amaranth, no cocotb). The RTL (:mod:`hdl.noc`) is generated from these
graphs and tables, and the testbenches take their expectations from here.

Nodes
    Node ``n`` sits at coordinates ``(x, y, z)`` with ``n = x + X*(y + Y*z)`` for dimensions
    ``(X, Y, Z)`` (``Z = 1`` for a 2D network). In a 3D network ``z`` is the tier; tier 0 is
    the bottom one (Atleus' systolic-array tier).

Ports
    Port 0 of every router is the local port (injection/ejection). Mesh routers (``mesh``)
    have the fixed port map ``MESH_PORTS`` (1 +x, 2 -x, 3 +y, 4 -y, 5 +z, 6 -z), also at the
    edges, where the missing neighbours leave ports unconnected. Routers of the other
    topologies have one port per link: planar links first, then up (+z), down (-z), skip.

Topologies
    ``mesh``: 2D or 3D mesh. ``mesh_skip``: 3D mesh plus a skip-tier link from every core of
    tier 0 to the core above it on the top tier. ``atleus``: tier 0 a 2D mesh (systolic
    cores); tiers 1.. each a space-filling-curve chain (Hilbert curve for a square
    power-of-two tier, serpentine otherwise) so consecutive cores are one hop apart; TSV links
    between vertically adjacent cores of adjacent tiers; skip links from tier 0 to the top
    tier (Atleus, Section IV-B and Fig. 2: 4 tiers of 4x4 cores, 48 TSVs + 16 skip TSVs).

Routing (destination-based: the output port depends only on the router and the destination)
    ``mesh``: dimension order X, then Y, then Z. ``mesh_skip``: the skip link first when it
    shortens the vertical distance (only from tier 0 or the top tier), then X, Y, Z.
    ``atleus``: the skip link first when it shortens the vertical distance, then vertical
    (TSV) moves to the destination tier, then planar moves in the destination tier (XY on the
    mesh tier, along the chain on a curve tier). :func:`updown_table` gives up*/down* routing
    for any connected graph. :func:`check_deadlock_free` proves a table deadlock-free by
    showing that its channel-dependency graph is acyclic (Dally and Seitz); every virtual
    channel may carry any packet, so the physical-channel graph is the one to check. The
    router's VC allocation (any free VC, except that a head must wait for the VC that still
    holds a packet for its destination downstream) waits only for VCs of the next channel on
    the route, so each VC-level dependency lies on an edge of this graph and a cycle of VCs
    would project onto a cycle of physical channels: acyclic here means deadlock-free there.

Timing contract of the router (:class:`hdl.noc.NocRouter`, :func:`zero_load_latency`)
    One cycle in the router (route, VC and switch allocation, switch traversal into the output
    register) and one cycle on the link (into the next router's input buffer): 2 cycles per
    hop. A packet of ``L`` flits injected back to back over ``h`` router-to-router hops
    leaves the ejection port, at zero load and with the ejection always ready, ``2*h + 2 +
    (L - 1)`` cycles after its head flit was accepted at injection (head transfer to tail
    transfer). Credits come back ``CREDIT_ROUND_TRIP`` = 3 cycles after a flit was sent, so a
    buffer of at least 3 flits per VC sustains one flit per cycle on a link.
"""

from dataclasses import dataclass, field

import numpy as np

from ._check import check_choice

__all__ = [
    "TOPOLOGIES", "MESH_PORTS", "ROUTER_CYCLES", "LINK_CYCLES", "EJECT_CYCLES",
    "CREDIT_ROUND_TRIP", "Topology", "mesh", "mesh_skip", "atleus", "make_topology",
    "hilbert_curve", "serpentine_curve", "routing_table", "updown_table", "path", "hops",
    "channel_dependency_graph", "find_cycle", "check_deadlock_free", "zero_load_latency",
    "port_histogram", "average_hops", "hop_matrix", "layer_pipeline",
]

TOPOLOGIES = ("mesh", "mesh_skip", "atleus")
MESH_PORTS = {"local": 0, "+x": 1, "-x": 2, "+y": 3, "-y": 4, "+z": 5, "-z": 6}

ROUTER_CYCLES = 1      # input buffer head -> output register
LINK_CYCLES = 1        # output register -> next router's input buffer
EJECT_CYCLES = 1       # ejection register -> transfer on the ejection stream
CREDIT_ROUND_TRIP = 3  # flit sent -> its credit usable for the next flit


@dataclass
class Topology:
    """A network as a graph of routers and links.

    Attributes
    ----------
    name : str
        ``mesh``, ``mesh_skip`` or ``atleus``.
    dims : tuple of int
        ``(X, Y)`` or ``(X, Y, Z)``.
    ports : list of list
        ``ports[n][p]`` is ``(neighbour, neighbour_port, kind)`` for a connected port,
        ``None`` for the local port 0 and for unconnected ports. ``kind`` is ``"planar"``,
        ``"tsv"`` or ``"skip"``.
    routing : str
        ``"dor"`` (mesh: dimension order in hardware) or ``"table"``.
    curve : list
        The order of the cores along the chain of a curve tier (``atleus``), as ``(x, y)``.
    """

    name: str
    dims: tuple
    ports: list = field(default_factory=list)
    routing: str = "table"
    curve: list = field(default_factory=list)

    @property
    def n_nodes(self):
        return int(np.prod(self.dims))

    @property
    def shape3(self):
        return tuple(self.dims) + (1,) * (3 - len(self.dims))

    def coords(self, n):
        X, Y, _ = self.shape3
        return n % X, (n // X) % Y, n // (X * Y)

    def node(self, x, y, z=0):
        X, Y, _ = self.shape3
        return x + X * (y + Y * z)

    def n_ports(self, n):
        return len(self.ports[n])

    def degree(self, n):
        """Connected ports of router ``n``, the local port included."""
        return 1 + sum(p is not None for p in self.ports[n][1:])

    def links(self):
        """Directed channels ``(node, port, neighbour, neighbour_port, kind)``."""
        return [(n, p, *link) for n in range(self.n_nodes)
                for p, link in enumerate(self.ports[n]) if link is not None]


def _check_dims(dims, ndim=None):
    if not isinstance(dims, (tuple, list)) or len(dims) not in (2, 3) or \
            not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise TypeError(f"dims must be a tuple of 2 or 3 positive integers, not {dims!r}")
    if ndim is not None and len(dims) != ndim:
        raise ValueError(f"dims must have {ndim} entries for this topology, not {dims!r}")
    if np.prod(dims) < 2:
        raise ValueError(f"dims must describe at least 2 nodes, not {dims!r}")
    return tuple(dims)


def _connect(ports, a, b, kind):
    pa, pb = len(ports[a]), len(ports[b])
    ports[a].append((b, pb, kind))
    ports[b].append((a, pa, kind))


def mesh(dims=(4, 4)):
    """2D or 3D mesh with the fixed port map :data:`MESH_PORTS` (DOR routing)."""
    dims = _check_dims(dims)
    topo = Topology("mesh", dims, routing="dor")
    X, Y, Z = topo.shape3
    n_ports = 1 + 2 * len(dims)
    topo.ports = [[None] * n_ports for _ in range(topo.n_nodes)]
    for n in range(topo.n_nodes):
        x, y, z = topo.coords(n)
        for axis, (c, size) in enumerate(((x, X), (y, Y), (z, Z))[:len(dims)]):
            step = (1, X, X * Y)[axis]
            if c + 1 < size:
                topo.ports[n][1 + 2 * axis] = (n + step, 2 + 2 * axis,
                                               "tsv" if axis == 2 else "planar")
            if c > 0:
                topo.ports[n][2 + 2 * axis] = (n - step, 1 + 2 * axis,
                                               "tsv" if axis == 2 else "planar")
    return topo


def mesh_skip(dims=(4, 4, 4)):
    """3D mesh plus skip links between tier 0 and the top tier (table routing)."""
    dims = _check_dims(dims, 3)
    X, Y, Z = dims
    if Z < 3:
        raise ValueError(f"dims must have at least 3 tiers for skip links, not {dims!r}")
    topo = Topology("mesh_skip", dims)
    # Compact port numbers: planar links, then up, down, then skip.
    topo.ports = [[None] for _ in range(topo.n_nodes)]
    for kind_axis in (0, 1):
        for n in range(topo.n_nodes):
            x, y, z = topo.coords(n)
            if kind_axis == 0 and x + 1 < X:
                _connect(topo.ports, n, n + 1, "planar")
            if kind_axis == 1 and y + 1 < Y:
                _connect(topo.ports, n, n + X, "planar")
    _add_vertical(topo)
    return topo


def _add_vertical(topo):
    X, Y, Z = topo.shape3
    for z in range(Z - 1):
        for y in range(Y):
            for x in range(X):
                _connect(topo.ports, topo.node(x, y, z), topo.node(x, y, z + 1), "tsv")
    for y in range(Y):
        for x in range(X):
            _connect(topo.ports, topo.node(x, y, 0), topo.node(x, y, Z - 1), "skip")


def hilbert_curve(order):
    """The ``(x, y)`` cells of a ``2**order`` square in Hilbert-curve order."""
    n = 1 << order
    cells = []
    for d in range(n * n):
        x = y = 0
        t = d
        s = 1
        while s < n:
            rx = 1 & (t // 2)
            ry = 1 & (t ^ rx)
            if ry == 0:
                if rx == 1:
                    x, y = s - 1 - x, s - 1 - y
                x, y = y, x
            x += s * rx
            y += s * ry
            t //= 4
            s *= 2
        cells.append((x, y))
    return cells


def serpentine_curve(X, Y):
    """The ``(x, y)`` cells of an ``X`` by ``Y`` grid in boustrophedon order."""
    return [(x if y % 2 == 0 else X - 1 - x, y) for y in range(Y) for x in range(X)]


def atleus(dims=(4, 4, 4)):
    """Atleus' heterogeneous 3D NoC: mesh tier 0, curve-chain tiers above, TSVs, skip links."""
    dims = _check_dims(dims, 3)
    X, Y, Z = dims
    if Z < 3:
        raise ValueError(f"dims must have at least 3 tiers for skip links, not {dims!r}")
    topo = Topology("atleus", dims)
    if X == Y and X & (X - 1) == 0:
        topo.curve = hilbert_curve(X.bit_length() - 1)
    else:
        topo.curve = serpentine_curve(X, Y)
    topo.ports = [[None] for _ in range(topo.n_nodes)]
    for n in range(X * Y):                      # tier 0: mesh, +x links then +y links
        x, y, _ = topo.coords(n)
        if x + 1 < X:
            _connect(topo.ports, n, n + 1, "planar")
    for n in range(X * Y):
        x, y, _ = topo.coords(n)
        if y + 1 < Y:
            _connect(topo.ports, n, n + X, "planar")
    for z in range(1, Z):                       # curve tiers: a chain
        for (xa, ya), (xb, yb) in zip(topo.curve, topo.curve[1:]):
            _connect(topo.ports, topo.node(xa, ya, z), topo.node(xb, yb, z), "planar")
    _add_vertical(topo)
    return topo


def make_topology(topology="mesh", dims=(4, 4)):
    """The topology called ``topology`` (one of :data:`TOPOLOGIES`) at ``dims``."""
    check_choice("topology", topology, TOPOLOGIES)
    return {"mesh": mesh, "mesh_skip": mesh_skip, "atleus": atleus}[topology](tuple(dims))


# -- routing --------------------------------------------------------------------------------

def _port_to(topo, n, m, kind=None):
    for p, link in enumerate(topo.ports[n]):
        if link is not None and link[0] == m and (kind is None or link[2] == kind):
            return p
    raise AssertionError(f"no link {n} -> {m}")


def _dor_port(topo, n, d):
    """Dimension order X, Y, Z on a mesh (the hardware's rule for ``routing="dor"``)."""
    here, there = topo.coords(n), topo.coords(d)
    for axis in range(3):
        if there[axis] > here[axis]:
            return 1 + 2 * axis
        if there[axis] < here[axis]:
            return 2 + 2 * axis
    return 0


def _skip_helps(topo, z, dz):
    Z = topo.shape3[2]
    if z == 0:
        return abs(dz - (Z - 1)) + 1 < abs(dz - z)
    if z == Z - 1:
        return abs(dz - 0) + 1 < abs(dz - z)
    return False


def _table_port(topo, n, d):
    if n == d:
        return 0
    x, y, z = topo.coords(n)
    dx, dy, dz = topo.coords(d)
    X, Y, Z = topo.shape3
    if _skip_helps(topo, z, dz):
        return _port_to(topo, n, topo.node(x, y, Z - 1 if z == 0 else 0), "skip")
    if topo.name == "mesh_skip":
        order = [(dx, x, 1), (dy, y, X), (dz, z, X * Y)]
        for want, have, step in order:
            if want != have:
                return _port_to(topo, n, n + step * (1 if want > have else -1),
                                "tsv" if step == X * Y else "planar")
    if topo.name == "atleus":
        if dz != z:
            return _port_to(topo, n, n + X * Y * (1 if dz > z else -1), "tsv")
        if z == 0:
            if dx != x:
                return _port_to(topo, n, n + (1 if dx > x else -1), "planar")
            return _port_to(topo, n, n + X * (1 if dy > y else -1), "planar")
        here, there = topo.curve.index((x, y)), topo.curve.index((dx, dy))
        nx, ny = topo.curve[here + (1 if there > here else -1)]
        return _port_to(topo, n, topo.node(nx, ny, z), "planar")
    raise AssertionError(topo.name)


def routing_table(topo, scheme="auto"):
    """``table[n, d]``: the output port router ``n`` takes for destination ``d``.

    ``scheme``: ``"dor"`` (dimension order, meshes), ``"rule"`` (the topology's own rule, see
    the module docstring), ``"updown"`` (:func:`updown_table` from the best root) or
    ``"auto"``: dimension order on a mesh, otherwise whichever of ``"rule"`` and up*/down*
    (over every root) gives the fewest average hops. Every table returned is checked with
    :func:`check_deadlock_free`.
    """
    check_choice("scheme", scheme, ("auto", "dor", "rule", "updown"))
    key = (topo.name, tuple(topo.dims), scheme)
    if key not in _TABLES:
        N = topo.n_nodes
        if scheme == "dor" or (scheme == "auto" and topo.routing == "dor"):
            if topo.name != "mesh":
                raise ValueError(f"scheme 'dor' needs a mesh, not {topo.name!r}")
            table = np.array([[_dor_port(topo, n, d) for d in range(N)] for n in range(N)])
        else:
            candidates = []
            if scheme in ("auto", "rule") and topo.name != "mesh":
                candidates.append(np.array([[_table_port(topo, n, d) for d in range(N)]
                                            for n in range(N)]))
            if scheme in ("auto", "updown"):
                candidates += [updown_table(topo, r) for r in range(N)]
            table = min(candidates, key=lambda t: average_hops(topo, t))
        check_deadlock_free(topo, table)
        table.setflags(write=False)
        _TABLES[key] = table
    return _TABLES[key]


_TABLES = {}


def updown_table(topo, root=0):
    """Up*/down* routing for any connected topology (deadlock-free by construction).

    A BFS from ``root`` orders the routers by ``(level, id)``; a channel towards a smaller
    one goes up. A router forwards down along a shortest all-down path when the destination
    can be reached that way, and up otherwise (to the up neighbour with the shortest
    remaining route), so every route is some up channels followed by some down channels.
    """
    N = topo.n_nodes
    level = {root: 0}
    frontier = [root]
    while frontier:
        nxt = []
        for n in frontier:
            for link in topo.ports[n][1:]:
                if link is not None and link[0] not in level:
                    level[link[0]] = level[n] + 1
                    nxt.append(link[0])
        frontier = nxt
    if len(level) != N:
        raise ValueError("topology is not connected")
    rank = {n: (level[n], n) for n in range(N)}
    order = sorted(range(N), key=rank.get)
    table = np.zeros((N, N), dtype=np.int64)
    for d in range(N):
        # Shortest all-down distance to d: reverse BFS along down channels (m -> n with n lower).
        down = {d: 0}
        frontier = [d]
        while frontier:
            nxt = []
            for n in frontier:
                for link in topo.ports[n][1:]:
                    if link is not None and rank[link[0]] < rank[n] and link[0] not in down:
                        down[link[0]] = down[n] + 1
                        nxt.append(link[0])
            frontier = nxt
        length = {}
        for n in order:                          # up neighbours come first in this order
            if n in down:
                length[n] = down[n]
                if n == d:
                    table[n, d] = 0
                    continue
                for p, link in enumerate(topo.ports[n]):
                    if link is not None and link[0] in down and rank[link[0]] > rank[n] \
                            and down[link[0]] == down[n] - 1:
                        table[n, d] = p
                        break
            else:
                best = None
                for p, link in enumerate(topo.ports[n]):
                    if link is not None and rank[link[0]] < rank[n]:
                        if best is None or length[link[0]] < best[0]:
                            best = (length[link[0]], p)
                length[n] = best[0] + 1
                table[n, d] = best[1]
    return table


def path(topo, table, src, dst):
    """Routers visited from ``src`` to ``dst`` (both included); fails on a routing loop."""
    route = [src]
    n = src
    while n != dst:
        p = int(table[n, dst])
        link = topo.ports[n][p] if p else None
        if link is None:
            raise ValueError(f"route {src} -> {dst} takes unconnected port {p} at router {n}")
        n = link[0]
        route.append(n)
        if len(route) > topo.n_nodes:
            raise ValueError(f"route {src} -> {dst} loops")
    return route


def hops(topo, table, src, dst):
    """Router-to-router links on the route from ``src`` to ``dst``."""
    return len(path(topo, table, src, dst)) - 1


def hop_matrix(topo, table):
    """``h[s, d]``: router-to-router links on the route from ``s`` to ``d``."""
    N = topo.n_nodes
    nxt = np.empty((N, N), dtype=np.int64)
    for n in range(N):
        for d in range(N):
            p = int(table[n, d])
            link = topo.ports[n][p] if p else None
            nxt[n, d] = n if p == 0 else (link[0] if link is not None else -1)
    if (nxt < 0).any():
        raise ValueError("routing takes an unconnected port")
    cur = np.repeat(np.arange(N)[:, None], N, axis=1)
    dest = np.repeat(np.arange(N)[None, :], N, axis=0)
    h = np.zeros((N, N), dtype=np.int64)
    for _ in range(N):
        moving = cur != dest
        if not moving.any():
            return h
        h += moving
        cur = nxt[cur, dest]
    raise ValueError("routing loops")


def average_hops(topo, table, include_self=True):
    """Mean hop count over all (source, destination) pairs (uniform random traffic)."""
    h = hop_matrix(topo, table)
    N = topo.n_nodes
    return h.sum() / (N * N if include_self else N * (N - 1))


def channel_dependency_graph(topo, table):
    """Edges ``(channel_a, channel_b)`` where some route holds ``a`` while requesting ``b``.

    A channel is ``(router, output port)``; the ejection (port 0) is a sink and not listed.
    """
    edges = set()
    N = topo.n_nodes
    for s in range(N):
        for d in range(N):
            route = path(topo, table, s, d)
            chans = [(a, int(table[a, d])) for a in route[:-1]]
            edges.update(zip(chans, chans[1:]))
    return edges


def find_cycle(edges):
    """A cycle of the directed graph ``edges`` as a list of vertices, or None."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    colour = dict.fromkeys(graph, 0)       # 0 new, 1 on stack, 2 done
    for start in graph:
        if colour[start]:
            continue
        stack = [(start, iter(graph[start]))]
        colour[start] = 1
        trail = [start]
        while stack:
            v, it = stack[-1]
            for w in it:
                if colour[w] == 1:
                    return trail[trail.index(w):] + [w]
                if colour[w] == 0:
                    colour[w] = 1
                    trail.append(w)
                    stack.append((w, iter(graph[w])))
                    break
            else:
                colour[v] = 2
                trail.pop()
                stack.pop()
    return None


def check_deadlock_free(topo, table):
    """Raise ``ValueError`` (naming a dependency cycle) unless every route reaches its
    destination and the channel-dependency graph is acyclic."""
    cycle = find_cycle(channel_dependency_graph(topo, table))
    if cycle is not None:
        raise ValueError(f"routing of {topo.name} can deadlock: channel-dependency cycle "
                         f"{cycle}")
    return True


# -- timing and statistics ------------------------------------------------------------------

def zero_load_latency(hop_count, flits):
    """Cycles from the head flit's injection transfer to the tail flit's ejection transfer
    at zero load, for a packet of ``flits`` flits injected back to back over ``hop_count``
    router-to-router links (the router's timing contract)."""
    hop_count = np.asarray(hop_count)
    flits = np.asarray(flits)
    if np.any(hop_count < 0) or np.any(flits < 1):
        raise TypeError(f"hop_count must be >= 0 and flits >= 1, not {hop_count!r}, {flits!r}")
    return (ROUTER_CYCLES + LINK_CYCLES) * hop_count + ROUTER_CYCLES + EJECT_CYCLES + flits - 1


def port_histogram(topo):
    """``{ports: routers}``: how many routers have each connected-port count (local included),
    as in Atleus Fig. 8(a)."""
    hist = {}
    for n in range(topo.n_nodes):
        k = topo.degree(n)
        hist[k] = hist.get(k, 0) + 1
    return dict(sorted(hist.items()))


def layer_pipeline(dims=(4, 4, 4)):
    """Atleus' layer-to-layer traffic: the one destination of each core, ``None`` for the
    last stage of the last layer (Section IV-B, an interpretation stated here).

    Transformer layer ``k`` occupies the column of cores at the ``k``-th cell of the tier's
    space-filling curve (Hilbert curve for a square power-of-two tier, serpentine
    otherwise), one pipeline stage per tier ("intra-layer computing cores in the vertical
    direction"): multi-head attention with pre-trained weights on the top ReRAM tier, the
    dynamic products on the systolic tier 0 (reached over the skip link), then the
    feed-forward stages on ReRAM tiers 1 .. Z-2, whose last stage hands the activations to
    layer ``k + 1`` on the top tier of the next column along the curve. The same physical
    mapping is used on every topology, so the comparison isolates the links.
    """
    dims = _check_dims(dims, 3)
    X, Y, Z = dims
    if Z < 3:
        raise ValueError(f"dims must have at least 3 tiers for the layer pipeline, not {dims!r}")
    curve = hilbert_curve(X.bit_length() - 1) if X == Y and X & (X - 1) == 0 else \
        serpentine_curve(X, Y)

    def node(cell, z):
        x, y = cell
        return x + X * (y + Y * z)

    succ = [None] * (X * Y * Z)
    for k, cell in enumerate(curve):
        succ[node(cell, Z - 1)] = node(cell, 0)              # attention -> systolic (skip)
        for z in range(0, Z - 2):
            succ[node(cell, z)] = node(cell, z + 1)          # systolic -> FF1 -> FF2 ...
        if k + 1 < len(curve):
            succ[node(cell, Z - 2)] = node(curve[k + 1], Z - 1)   # next layer's attention
    return succ
