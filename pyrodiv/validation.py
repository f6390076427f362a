"""Argument checks shared by every public entry point, so that bad input gets one kind of
``ValueError`` that names the argument, before any work starts.

Example::

    >>> check_int(3, "num_particles")
    3
    >>> check_int(True, "num_particles")
    Traceback (most recent call last):
    ...
    ValueError: num_particles must be an integer >= 1, got True
"""

from __future__ import annotations

import contextlib
import operator

import pyro


def check_int(value, name: str, minimum: int = 1, none: str = "") -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) of at least ``minimum``; else a
    ``ValueError`` naming ``name``. ``none`` prefixes the requirement in the message (e.g.
    ``"None or "`` where ``None`` is also accepted by the caller)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        checked = operator.index(value)
    except TypeError:
        checked = None
    if checked is None or checked < minimum:
        raise ValueError(f"{name} must be {none}an integer >= {minimum}, got {value!r}")
    return checked


def check_positive_int(value, name: str, none: str = "") -> int:
    """:func:`check_int` with ``minimum=1``."""
    return check_int(value, name, 1, none)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch, ``random`` and NumPy with ``seed`` (an integer >= 0) and restore the
    previous random state on exit.

    Example::

        >>> with seeded(0):
        ...     a = torch.randn(1)
        >>> with seeded(0):
        ...     b = torch.randn(1)
        >>> bool(a == b)
        True
    """
    seed = check_int(seed, "seed", 0)
    state = pyro.util.get_rng_state()
    pyro.set_rng_seed(seed)
    try:
        yield
    finally:
        pyro.util.set_rng_state(state)
