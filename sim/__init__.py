"""fleetsim: a discrete-event simulator of LLM serving fleets and agents.

    import sim
    result = sim.run()                                  # the shipped default scenario
    result = sim.run(model="llama-3.1-70b", gpu="h100", tp=8, num_gpus=8)
    result.summary["ttft_p99_s"], result.requests       # summary dict, per-request polars table
    plans = sim.search(model="llama-3.1-70b", gpu="h100", num_gpus=16)   # ranked plans (polars)
"""

from sim.errors import FleetsimError
from sim.planner import search_plans as search
from sim.runner import Result, run
from sim.scenario import SLO, Scenario, load_scenario
from sim.serving.engine_config import EngineConfig
from sim.workload.spec import WorkloadSpec

__all__ = ["SLO", "EngineConfig", "FleetsimError", "Result", "Scenario", "WorkloadSpec", "__version__", "load_scenario", "run",
           "search"]
from sim._version import __version__  # noqa: E402
