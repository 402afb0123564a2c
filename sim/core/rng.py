"""Seeded random streams: one independent numpy Generator per named component, all derived from one seed.

Deriving streams by name (not by call order) keeps a component's draws unchanged when another component is added.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    """The generator for component `name` under the run's `seed`."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))
