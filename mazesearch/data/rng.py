"""The splitmix64 PRNG every kernel uses (generators, endpoint choice, edge shuffle, baseline).

All functions are numba kernels on ``uint64`` states (also callable from Python). A stream is a
state advanced by :func:`splitmix64`; each caller seeds its own streams (per maze or per row),
so no kernel touches a global RNG. Changing anything here changes every dataset and token file.
"""

from __future__ import annotations

import numpy as np

from mazesearch.data.jit import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31, _S32 = (np.uint64(s) for s in (11, 27, 30, 31, 32))
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@njit
def mix64(z):
    """splitmix64's output function: a bijective 64-bit mix."""
    z = (z ^ (z >> _S30)) * MIX1
    z = (z ^ (z >> _S27)) * MIX2
    return z ^ (z >> _S31)


@njit
def splitmix64(state):
    """One splitmix64 step: returns (new state, 64 random bits)."""
    state = state + GOLDEN
    return state, mix64(state)


@njit
def below(bits, k):
    """Map 64 random bits to an int in [0, k), 1 <= k < 2**32: Lemire's multiply-shift on the top
    32 bits (bias below k / 2**32)."""
    return np.int64(((bits >> _S32) * np.uint64(k)) >> _S32)


@njit
def rand_below(state, k):
    """(new state, uniform int in [0, k)) for 1 <= k < 2**32: one :func:`splitmix64` step
    mapped by :func:`below`."""
    state, bits = splitmix64(state)
    return state, below(bits, k)


@njit
def rand_unit(state):
    """(new state, uniform float in [0, 1)) with 53 random bits."""
    state, bits = splitmix64(state)
    return state, np.float64(bits >> _S11) * _TO_UNIT


@njit
def row_state(seed, row, salt):
    """A well-mixed starting state for the private stream of one batch row: three splitmix64
    steps folding in ``seed``, ``row`` and ``salt``."""
    s, z = splitmix64(np.uint64(seed))
    s, z = splitmix64(z ^ (np.uint64(row) * GOLDEN))
    s, z = splitmix64(z ^ (np.uint64(salt) * MIX1))
    return z
