"""Small builders shared by the tests."""

from __future__ import annotations

from collections import Counter

from sim import EngineConfig, Scenario, WorkloadSpec
from sim.runner import Simulation, build, execute


def synthetic(model: str = "llama-3.1-8b", gpu: str = "h100", *, rate: float = 1.0, n: int = 200,
              input_len: str = "lognormal:512:1.0", output_len: str = "lognormal:128:1.0", seed: int = 0,
              arrival: str = "poisson", tp: int = 1, replicas: int = 1, engine: EngineConfig | None = None,
              router: str = "round-robin", max_tokens: int | None = None, attn_dp: int = 1,
              pp: int = 1) -> Scenario:
    return Scenario(model=model, gpu=gpu, tp=tp, replicas=replicas, seed=seed, router=router, attn_dp=attn_dp, pp=pp,
                    engine=engine or EngineConfig(),
                    workload=WorkloadSpec(trace=None, arrival=arrival, rate=rate, num_requests=n, duration_s=None,
                                          input_len=input_len, output_len=output_len, max_tokens=max_tokens))


def run_checked(scenario: Scenario, observer=None, on_finish=None) -> tuple[Simulation, Counter]:  # noqa: ANN001
    """Build and run, counting how many times each request is reported finished; `observer(replica)` runs after
    every step of every replica, `on_finish(request)` at every completion."""
    sim = build(scenario)
    seen: Counter = Counter()
    sim.fleet.on_finish(lambda r: seen.update([r.rid]))
    if on_finish is not None:
        sim.fleet.on_finish(on_finish)
    if observer is not None:
        for rep in sim.fleet.replicas:
            rep.observer = observer
    execute(sim)
    return sim, seen
