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


def test_redundant_experts_take_their_slots_in_the_memory_budget():
    """EPLB's R redundant experts add ceil((E + R) / ep) - E / ep expert slots per MoE layer on each GPU."""
    expert = V3.expert_params * dtype_bytes("fp8")
    plan = Plan(tp=1, attn_dp=8, ep=8)
    base = _budget(plan)
    for r, slots in ((8, 1), (32, 4), (12, 2)):
        more = memory_budget(V3, load_gpu("h200"), plan, gpu_memory_utilization=0.9, block_size=16,
                             max_batched_tokens=2048, max_num_seqs=256, redundant_experts=r)
        assert more.weight_bytes - base.weight_bytes == pytest.approx(slots * expert * V3.num_moe_layers)
        assert more.token_capacity < base.token_capacity
    with pytest.raises(FleetsimError, match="fewer than 256 redundant experts"):
        memory_budget(V3, load_gpu("h200"), plan, gpu_memory_utilization=0.9, block_size=16,
                      max_batched_tokens=2048, max_num_seqs=256, redundant_experts=256)


def test_two_hop_all_to_all_across_nodes_sends_each_token_once_per_node():
    from sim.hardware.collective import alltoall_model, node_dedup
    assert node_dedup(1, 8) == 1.0
    assert node_dedup(4, 1) == pytest.approx(1.0)  # one copy: nothing to share
    assert node_dedup(2, 8) == pytest.approx(2 * (1 - 0.5 ** 8) / 8)  # 8 copies reach at most 2 nodes
    gpu, node = load_gpu("h100"), load_node("hgx-8gpu")
    slow = Cluster(gpu, node, load_fabric("ib-ndr-400"), 32)
    cost = IterationCost(V3, slow, Plan(tp=1, attn_dp=32, ep=32), 0.0)
    nbytes = 256e6
    # Four nodes: 3/4 of the copies are remote, sent once per node over each GPU's 50 GB/s NIC.
    rdma = nbytes * 0.75 * node_dedup(4, 8) / (slow.fabric.gbps_per_gpu * 1e9)
    assert cost.alltoall(nbytes) == pytest.approx(rdma + slow.fabric.latency_us * 1e-6)
    inside = alltoall_model(Cluster(gpu, node, load_fabric("ib-ndr-400"), 8), cost.calib, gpu.scale_up_gbps, 8, 8)
    assert inside(nbytes) < cost.alltoall(nbytes)  # NVLink inside a node beats the fabric


def test_search_sweeps_ep_degree_and_balancing_policy():
    r = search(model="gpt-oss-20b", gpu="h100", num_gpus=8, workers=2, moe_routing="measured",
               space=SearchSpace(tp=(1, 8), attn_dp=(1, 8), ep=(1, 8), moe_policies=("ep", "eplb:8", "llep"),
                                 max_num_seqs=(256,), max_num_batched_tokens=(8192,)),
               **{"workload.num_requests": 300, "workload.rate": 30.0, "workload.duration_s": None})
    t = r.table.filter(pl.col("status") == "ok")
    ep_plans = t.filter(pl.col("ep") == 8)
    assert set(ep_plans["moe_policy"]) == {"ep", "eplb:8", "llep"}
    assert set(t.filter(pl.col("ep") == 1)["moe_policy"]) == {"ep"}  # policies need EP
    tpot = {(p, m): v for p, m, v in zip(ep_plans["plan"], ep_plans["moe_policy"], ep_plans["tpot_p90_s"])}
    dp8 = "1x(TP1,DP8,EP8) moe="
    assert tpot[(dp8 + "eplb:8", "eplb:8")] < tpot[(dp8 + "ep", "ep")]  # measured skew costs plain EP
    with pytest.raises(FleetsimError, match="has no experts"):
        search(model="llama-3.1-8b", num_gpus=2, space=SearchSpace(moe_policies=("llep",)))
    with pytest.raises(FleetsimError, match="moe policy: expected"):
        SearchSpace(moe_policies=("eplb:x",))
