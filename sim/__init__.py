"""fleetsim: a discrete-event simulator of LLM serving fleets and agents.

    import sim
    result = sim.run()                                  # the shipped default scenario
    result = sim.run(model="llama-3.1-70b", gpu="h100", tp=8, num_gpus=8)
    result.summary["ttft_p99_s"], result.requests       # summary dict, per-request polars table
    plans = sim.search(model="llama-3.1-70b", gpu="h100", num_gpus=16)   # ranked plans (polars)

The names below load on first use (PEP 562), so that `import sim` and `fleetsim --help` do not pay for the
simulator, polars, scipy and the planner until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sim._version import __version__
from sim.errors import FleetsimError

if TYPE_CHECKING:
    from sim.planner import search_plans as search
    from sim.runner import Result, run
    from sim.scenario import SLO, Scenario, load_scenario
    from sim.serving.engine_config import EngineConfig
    from sim.workload.spec import WorkloadSpec

_LAZY = {"search": ("sim.planner", "search_plans"), "run": ("sim.runner", "run"), "Result": ("sim.runner", "Result"),
         "SLO": ("sim.scenario", "SLO"), "Scenario": ("sim.scenario", "Scenario"),
         "load_scenario": ("sim.scenario", "load_scenario"), "EngineConfig": ("sim.serving.engine_config", "EngineConfig"),
         "WorkloadSpec": ("sim.workload.spec", "WorkloadSpec")}

__all__ = ["SLO", "EngineConfig", "FleetsimError", "Result", "Scenario", "WorkloadSpec", "__version__", "load_scenario",
           "run", "search"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
