"""Prefill/decode disaggregation: conservation, the analytic lone request, and the interference it removes."""

import numpy as np
import pytest

import sim
from helpers import run_checked
from sim.cost import IterationCost
from sim.hardware import Cluster, load_fabric, load_gpu, load_node
from sim.model import load_model
from sim.parallel import Plan
from sim.scenario import DisaggSpec
from sim.planner import SearchSpace, search
from sim.serving.request import FINISHED


def _workload(rate, n, inp="lognormal:4000:0.5", out="lognormal:300:0.5"):
    return {"workload.trace": None, "workload.arrival": "poisson", "workload.rate": rate, "workload.num_requests": n,
            "workload.duration_s": None, "workload.input_len": inp, "workload.output_len": out}


def test_lone_request_pays_prefill_then_kv_transfer_then_decode():
    prompt, output = 3000, 20
    scenario = sim.Scenario(model="llama-3.1-8b", gpu="h100", disagg=DisaggSpec()).with_overrides(
        **_workload(1.0, 1, f"fixed:{prompt}", f"fixed:{output}"))
    row = sim.run(scenario).requests.row(0, named=True)
    model = load_model("llama-3.1-8b")
    cluster = Cluster(load_gpu("h100"), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 1)
    cost = IterationCost(model, cluster, Plan(), **scenario.engine.cost_args())
    fabric = load_fabric("ib-ndr-400")
    transfer = fabric.latency_us * 1e-6 + prompt * model.kv_bytes_per_token / (fabric.gbps_per_gpu * 1e9)
    ttft = cost.step_time([(prompt, 0)], 0, 0, num_logits=1)
    first_decode = cost.step_time([(1, prompt)], 0, 0, num_logits=1)  # the first token's KV, on the decode side
    rest = cost.decode_times(1, np.arange(prompt + 2, prompt + output)).sum()
    assert row["ttft_s"] == pytest.approx(ttft, rel=1e-12)
    assert row["e2e_s"] == pytest.approx(ttft + transfer + first_decode + rest, rel=1e-9)


def test_disaggregation_finishes_every_request_once_and_removes_prefill_interference():
    base = dict(model="llama-3.1-8b", gpu="h100", **_workload(12.0, 600))
    colocated = sim.run(num_gpus=4, **base).summary
    scenario = sim.Scenario(disagg=DisaggSpec(prefill_replicas=2, decode_replicas=2)).with_overrides(**base)
    simulation, seen = run_checked(scenario)
    assert sorted(seen) == list(range(600)) and set(seen.values()) == {1}
    assert all(r.state == FINISHED and r.generated == r.output for r in simulation.requests)
    for rep in [lane for r in simulation.fleet.replicas for lane in r.lanes]:
        assert rep.kv.used == 0
    split = sim.run(scenario).summary
    print(f"\np99 ITL colocated {colocated['itl_p99_s'] * 1e3:.0f} ms vs disaggregated {split['itl_p99_s'] * 1e3:.0f} ms;"
          f" p90 TTFT {colocated['ttft_p90_s'] * 1e3:.0f} vs {split['ttft_p90_s'] * 1e3:.0f} ms")
    assert split["itl_p99_s"] < 0.3 * colocated["itl_p99_s"]  # decodes never wait behind a long prefill
    assert split["tpot_p99_s"] < colocated["tpot_p99_s"]


def test_mixed_gpu_pools_and_pool_validation():
    s = sim.run(model="llama-3.1-8b", gpu="h100", disagg=DisaggSpec(decode_gpu="h200"), **_workload(2.0, 50)).info
    assert s["gpu"] == "h100-sxm+h200" and s["num_gpus"] == 2
    with pytest.raises(sim.FleetsimError, match="num_gpus = 8 but the prefill and decode pools use 2"):
        sim.run(model="llama-3.1-8b", num_gpus=8, disagg=DisaggSpec(), **_workload(2.0, 5))


def test_search_tries_every_pool_ratio():
    r = search(model="llama-3.1-8b", gpu="h100", num_gpus=4, workers=2,
               space=SearchSpace(max_num_seqs=(256,), max_num_batched_tokens=(2048,), disagg=True),
               **_workload(12.0, 300), **{"slo.tpot_s": 0.03, "slo.ttft_s": 1.0})
    disagg = r.table.filter(r.table["kind"] == "disaggregated")
    # prefill GPUs 1..3 (TP1), 2 (TP2) against decode pools filling the rest: P:1+D:3, P:1+D:1x2, P:2+D:2, ...
    assert disagg.height >= 6
    assert {"P:1x(TP1)+D:3x(TP1)", "P:2x(TP1)+D:2x(TP1)", "P:3x(TP1)+D:1x(TP1)"} <= set(disagg["plan"])
    assert (disagg["status"] == "ok").all()


def test_search_over_two_gpu_types_as_separate_pools():
    r = search(model="llama-3.1-8b", gpu="h100", num_gpus=2, workers=2,
               space=SearchSpace(max_num_seqs=(256,), max_num_batched_tokens=(2048,), second_gpu="a100",
                                 second_num_gpus=2),
               **_workload(8.0, 200, "lognormal:2000:0.5", "lognormal:200:0.5"))
    # prefill on either type with TP1 x2 or TP2 x1, decode on the other likewise: 2 x 2 x 2 plans
    assert r.table.height == 8 and (r.table["status"] == "ok").all()
    assert set(r.table["prefill_gpu"]) == set(r.table["decode_gpu"]) == {"h100-sxm", "a100-80gb-sxm"}
    assert (r.table["num_gpus"] == 4).all()
    h100, a100 = load_gpu("h100").price_per_hour_usd, load_gpu("a100").price_per_hour_usd
    assert (r.table["hourly_usd"] == 2 * h100 + 2 * a100).all()
    # decode is bound by memory bandwidth: on H100 (3.35 TB/s) it is faster than on A100 (2.0 TB/s)
    tpot = {(p, d): t for p, d, t in r.table.select("prefill_gpu", "decode_gpu", "tpot_p50_s").iter_rows()}
    assert min(t for (p, d), t in tpot.items() if d == "h100-sxm") < min(
        t for (p, d), t in tpot.items() if d == "a100-80gb-sxm")


def _moe_pools(**pools):
    spec = DisaggSpec(**{"prefill_tp": 2, "decode_tp": 2, **pools})
    return sim.run(model="qwen3-30b-a3b", gpu="h100", disagg=spec, moe_routing="zipf:1.0",
                   **_workload(6.0, 200, "lognormal:2000:0.5", "lognormal:200:0.5"))


def test_each_pool_is_a_plan_of_its_own():
    """Every per-pool option acts: the decode pool's DP attention + EP, its balancing policy, the prefill pool's PP."""
    tp = _moe_pools()
    dp_ep = _moe_pools(decode_tp=1, decode_attn_dp=2, decode_ep=2)
    eplb = _moe_pools(decode_tp=1, decode_attn_dp=2, decode_ep=2, decode_moe_policy="eplb:2")
    assert tp.info["num_gpus"] == dp_ep.info["num_gpus"] == 4
    assert "decode_moe_imbalance" not in tp.summary  # experts split by TP: no expert-parallel balance
    assert dp_ep.summary["decode_moe_policy"] == "ep" and eplb.summary["decode_moe_policy"] == "eplb:2"
    assert dp_ep.info["engines"] == 1 + 2  # one prefill engine, two decode attention ranks
    assert dp_ep.summary["tpot_p50_s"] != tp.summary["tpot_p50_s"]
    assert eplb.summary["decode_moe_imbalance"] < dp_ep.summary["decode_moe_imbalance"]
    assert tp.summary["ttft_p50_s"] == dp_ep.summary["ttft_p50_s"]  # the prefill pool is the same plan
    pp = sim.run(model="llama-3.1-8b", gpu="h100", disagg=DisaggSpec(prefill_pp=2, decode_replicas=2),
                 **_workload(4.0, 100))
    assert pp.info["num_gpus"] == 4 and pp.summary["num_finished"] == 100


def test_options_a_split_plan_cannot_use_are_refused_in_one_line():
    work = _workload(2.0, 5)
    for field, value in (("tp", 2), ("ep", 2), ("attn_dp", 2), ("pp", 2), ("tp_nodes", 1), ("moe_policy", "llep")):
        with pytest.raises(sim.FleetsimError, match=f"^{field}: disaggregated pools take their plans from"):
            sim.run(model="qwen3-30b-a3b", disagg=DisaggSpec(), **{field: value}, **work)
    with pytest.raises(sim.FleetsimError, match="decode: plan.ep must be 1 or tp x attn_dp"):
        DisaggSpec(decode_tp=2, decode_ep=4)
    with pytest.raises(sim.FleetsimError, match="decode pool: moe_policy llep: needs expert parallelism"):
        sim.run(model="qwen3-30b-a3b", disagg=DisaggSpec(decode_moe_policy="llep"), **work)
    from sim.agents.spec import AgentSpec

    with pytest.raises(sim.FleetsimError, match="kv_policy pin:5: .* needs colocated replicas"):
        sim.run(model="llama-3.1-8b", disagg=DisaggSpec(), agents=AgentSpec(programs=2, agents=1, kv_policy="pin:5"))


def test_search_over_split_pools_with_every_router():
    for router in ("least-tokens", "prefix-aware"):
        r = search(model="llama-3.1-8b", gpu="h100", num_gpus=3, workers=1, router=router,
                   space=SearchSpace(tp=(1,), max_num_seqs=(256,), max_num_batched_tokens=(2048,), disagg=True),
                   **_workload(6.0, 60))
        split = r.table.filter(r.table["kind"] == "disaggregated")
        assert split.height == 2 and (split["status"] == "ok").all()


def test_cli_takes_per_pool_flags():
    import json

    from typer.testing import CliRunner

    from sim.cli import app

    res = CliRunner().invoke(app, ["run", "--model", "qwen3-30b-a3b", "--gpu", "h100", "--prefill-tp", "2",
                                   "--decode-attn-dp", "2", "--decode-ep", "2", "--decode-moe-policy", "eplb:2",
                                   "--moe-routing", "zipf:1.0", "--num-requests", "40", "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["decode_moe_policy"] == "eplb:2" and s["num_finished"] == 40


def test_a_prefill_engine_needs_room_for_the_prompt_and_one_token_only():
    """The prefill pool is checked for the longest prompt + 1 and admits a request whose prompt + output exceeds
    its context, as long as the prompt and its first token fit."""
    from sim.serving.request import Request
    from sim.serving.scheduler import Scheduler
    from sim.serving.kv_cache import KVCache
    from sim import EngineConfig

    engine = Scheduler(0, KVCache(100, 16), EngineConfig(), max_model_len=1584, on_finish=lambda r: None)
    r = Request(0, 0.0, prompt=1500, output=500)
    assert not engine.accepts(r)
    r.target = 1  # what the split fleet asks of its prefill pool
    assert engine.accepts(r)
