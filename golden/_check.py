"""Shared argument checks for the golden models (error messages in the house style)."""

import numbers

import numpy as np

__all__ = ["check_int", "check_real", "check_choice", "as_int_array"]


def check_int(name, value, lo=None, hi=None):
    """Return ``value`` as a Python int, or raise ``TypeError`` naming ``name`` and the range."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok:
        value = int(value)
        ok = (lo is None or value >= lo) and (hi is None or value <= hi)
    if not ok:
        if lo is not None and hi is not None:
            what = f"an integer from {lo} to {hi}"
        elif lo == 0:
            what = "a non-negative integer"
        elif lo == 1:
            what = "a positive integer"
        elif lo is not None:
            what = f"an integer of at least {lo}"
        else:
            what = "an integer"
        raise TypeError(f"{name} must be {what}, not {value!r}")
    return value


def check_real(name, value, lo=None, hi=None, *, lo_open=False):
    """Return ``value`` as a float, or raise ``TypeError`` naming ``name`` and the range."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = np.isfinite(value)
        if ok and lo is not None:
            ok = value > lo if lo_open else value >= lo
        if ok and hi is not None:
            ok = value <= hi
    if not ok:
        if lo is not None and hi is not None:
            what = f"a real number from {lo} to {hi}"
        elif lo is not None:
            what = f"a real number {'greater than' if lo_open else 'of at least'} {lo}"
        else:
            what = "a finite real number"
        raise TypeError(f"{name} must be {what}, not {value!r}")
    return value


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise ``TypeError``."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise TypeError(f"{name} must be one of {allowed}, not {value!r}")
    return value


def as_int_array(name, value, *, lo=None, hi=None, ndim=None):
    """Return ``value`` as an int64 array; raise ``TypeError`` for non-integers or out-of-range values.

    Floats holding exact integers are not accepted: the digital side of the datapath is integer.
    """
    arr = np.asarray(value)
    if arr.dtype == object:
        try:
            if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in arr.flat):
                raise TypeError
            arr = arr.astype(np.int64)
        except (TypeError, OverflowError):
            raise TypeError(f"{name} must be an array of integers, not {arr.dtype} values") from None
    if arr.dtype.kind not in "iub":
        raise TypeError(f"{name} must be an array of integers, not {arr.dtype} values")
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must be an array of integers, not bool values")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, not {arr.ndim}-D with shape {arr.shape}")
    if arr.size and (lo is not None or hi is not None):
        amin, amax = int(arr.min()), int(arr.max())
        if (lo is not None and amin < lo) or (hi is not None and amax > hi):
            bad = amin if (lo is not None and amin < lo) else amax
            raise TypeError(f"{name} must hold integers from {lo} to {hi}, not {bad}")
    return arr.astype(np.int64, copy=False)
