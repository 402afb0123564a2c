"""The measured kernel tables shipped for a GPU: hardware/calibration/kernels/<name>.npz, read once per process."""

from __future__ import annotations

from functools import cache

import numpy as np

from sim.core.paths import data_dir


@cache
def _arrays(name: str) -> dict[str, np.ndarray] | None:
    path = data_dir("hardware") / "calibration" / "kernels" / f"{name}.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def shipped(name: str, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of `name`'s tables if they hold `key` (one table kind's marker), else None."""
    arrays = _arrays(name)
    return arrays if arrays is not None and key in arrays else None
