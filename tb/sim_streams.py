"""Amaranth-simulator stream helpers (async testbenches, ``ctx.set``/``ctx.get``)."""

from amaranth.lib import data

__all__ = ["stream_put", "stream_get", "check_stream_rule"]


async def stream_put(ctx, stream, payload, *, idle=0):
    """Send one payload on ``stream`` (after ``idle`` cycles with ``valid`` low).

    ``payload`` is an int (packed with :func:`tb.packing.pack` for struct payloads) or an
    Amaranth constant.
    """
    for _ in range(idle):
        await ctx.tick()
    target = stream.payload
    if isinstance(target, data.View) and isinstance(payload, int):
        target = target.as_value()
    ctx.set(stream.valid, 1)
    ctx.set(target, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, stall=0):
    """Receive one payload from ``stream`` (after ``stall`` cycles with ``ready`` low).

    Returns what ``ctx.get`` gives: an int, or a ``data.Const`` for a layout payload (its
    ``as_value().value`` is the packed word for :func:`tb.packing.unpack`).
    """
    for _ in range(stall):
        await ctx.tick()
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def check_stream_rule(ctx, stream, rst, done, out, key="rule_checks"):
    """The stream rule on ``stream``, every cycle until ``done()``: once ``valid`` is high
    without ``ready``, ``valid`` stays high and the payload stays the same until the transfer
    (a reset ``rst`` excepted). Counts the checked cycles in ``out[key]``."""
    held = None
    while not done():
        *_, valid, ready, word, reset = await ctx.tick().sample(
            stream.valid, stream.ready, stream.payload.as_value(), rst)
        if held is not None and not reset:
            assert valid and word == held, "o dropped valid or changed its payload"
            out[key] += 1
        held = word if valid and not ready and not reset else None
