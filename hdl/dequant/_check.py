"""Parameter checks of the dequantizer blocks (house-style messages)."""

from golden._check import check_choice, check_int

__all__ = ["check_int", "check_choice", "check_bool"]


def check_bool(name, value):
    """Return ``value`` if it is a bool, else raise ``TypeError``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {value!r}")
    return value
