"""Execution-plan search: the plan space, pruning bounds, the resumable results store, ranking."""

from __future__ import annotations

from typing import Any

import polars as pl

from sim.planner.runner import SearchResult, search
from sim.planner.space import SearchSpace

__all__ = ["SearchResult", "SearchSpace", "search", "search_plans"]


def search_plans(scenario=None, **kwargs: Any) -> pl.DataFrame:  # noqa: ANN001
    """The ranked plans as a polars DataFrame (`sim.search`); `sim.planner.search` returns the whole SearchResult."""
    return search(scenario, **kwargs).table
