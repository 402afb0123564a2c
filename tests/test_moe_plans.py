"""Mixture-of-experts plans: expert parallelism and data-parallel attention in memory, cost and search."""

import polars as pl
import pytest

from sim.cost import IterationCost
from sim.errors import FleetsimError
from sim.hardware import Cluster, load_fabric, load_gpu, load_node
from sim.model import load_model
from sim.model.dtypes import dtype_bytes
from sim.parallel import Plan, memory_budget
from sim.planner import SearchSpace, search

V3 = load_model("deepseek-v3")


def _budget(plan, gpu="h200"):
    return memory_budget(V3, load_gpu(gpu), plan, gpu_memory_utilization=0.9, block_size=16,
                         max_batched_tokens=2048, max_num_seqs=256)


def _cost(plan, gpu="h200"):
    cluster = Cluster(load_gpu(gpu), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 8)
    return IterationCost(V3, cluster, plan, 0.002)


def test_expert_parallel_weights_split_experts_and_replicate_attention_over_dp_ranks():
    experts = V3.routed_expert_params_total * dtype_bytes("fp8")
    rest = V3.weight_bytes - experts
    assert _budget(Plan(tp=8, ep=8)).weight_bytes == pytest.approx(rest / 8 + experts / 8)
    assert _budget(Plan(tp=1, attn_dp=8, ep=8)).weight_bytes == pytest.approx(rest + experts / 8)
    assert _budget(Plan(tp=2, attn_dp=4, ep=8)).weight_bytes == pytest.approx(rest / 2 + experts / 8)


def test_dp_attention_stops_replicating_mla_kv():
    """MLA's single latent cannot be split by TP, so TP8 caches every token on all 8 GPUs; DP attention does not."""
    tp8 = _budget(Plan(tp=8)).token_capacity
    dp8 = _budget(Plan(tp=1, attn_dp=8, ep=8)).token_capacity
    assert dp8 > 4 * tp8


def test_attention_work_is_the_busiest_ranks():
    tp1, dp8 = _cost(Plan(tp=1, attn_dp=1, ep=1), "h200"), _cost(Plan(tp=1, attn_dp=8, ep=8))
    lone = dp8.breakdown([], 1, 4000)["decode_attention_s"]
    assert lone == pytest.approx(tp1.breakdown([], 1, 4000)["decode_attention_s"])  # one sequence: one rank works
    eight = dp8.breakdown([], 8, 8 * 4000)["decode_attention_s"]
    assert eight == pytest.approx(lone)  # eight sequences over eight ranks: each rank holds one
    nine = dp8.breakdown([], 9, 9 * 4000)["decode_attention_s"]
    assert nine == pytest.approx(tp1.breakdown([], 2, 2 * 4000)["decode_attention_s"])  # the busiest rank holds 2


def test_plan_validation():
    with pytest.raises(FleetsimError, match="ep must be 1 or tp x attn_dp = 8"):
        Plan(tp=8, ep=4)
    import sim

    with pytest.raises(FleetsimError, match="has no experts"):
        sim.run(tp=2, ep=2, num_gpus=2)


def test_search_tries_expert_parallel_layouts_for_moe_models():
    r = search(model="deepseek-v3", gpu="h200", num_gpus=8, workers=2,
               space=SearchSpace(max_num_seqs=(256,), max_num_batched_tokens=(2048,)),
               **{"workload.arrival": "poisson", "workload.rate": 8.0, "workload.num_requests": 300,
                  "workload.duration_s": None})
    ok = r.table.filter(pl.col("status") == "ok")
    assert {"1x(TP8)", "1x(TP8,EP8)", "1x(TP1,DP8,EP8)", "1x(TP2,DP4,EP8)"} <= set(ok["plan"])
    rank = dict(zip(ok["plan"], ok["rank"]))
    assert rank["1x(TP1,DP8,EP8)"] < rank["1x(TP8)"]  # DeepSeek's own deployment style wins here
    tpot = dict(zip(ok["plan"], ok["tpot_p90_s"]))
    assert tpot["1x(TP1,DP8,EP8)"] < tpot["1x(TP8)"]
    dense = search(model="llama-3.1-8b", gpu="h100", num_gpus=2, workers=1,
                   space=SearchSpace(max_num_seqs=(256,), max_num_batched_tokens=(2048,)),
                   **{"workload.num_requests": 40, "workload.duration_s": None})
    assert (dense.table["ep"] == 1).all()  # dense models get no expert-parallel layouts
    assert "1x(TP1,DP2)" in set(dense.table["plan"])  # but data-parallel attention with a TP2 FFN
