"""Plans: memory feasibility, tensor and pipeline parallelism through the whole run."""

from pathlib import Path

import pytest

import sim
from sim.errors import FleetsimError
from sim.hardware import load_gpu
from sim.model import load_model
from sim.parallel import Plan, memory_budget

FIXTURES = Path(__file__).parent / "fixtures"


def _budget(model, gpu, plan, **kw):
    return memory_budget(load_model(model), load_gpu(gpu), plan, gpu_memory_utilization=kw.get("util", 0.9),
                         block_size=16, max_batched_tokens=kw.get("tokens", 8192), max_num_seqs=256)


def test_weights_that_do_not_fit_say_by_how_much():
    with pytest.raises(FleetsimError, match=r"needs 378.0 GiB of weights per GPU .* short by 306.0 GiB"):
        _budget("llama-3.1-405b", "a100", Plan(tp=2))


def test_kv_capacity_grows_with_tensor_parallelism():
    b4 = _budget("llama-3.1-70b", "h100", Plan(tp=4))
    b8 = _budget("llama-3.1-70b", "h100", Plan(tp=8))
    assert b8.weight_bytes == pytest.approx(b4.weight_bytes / 2)
    # KV heads split 8 ways instead of 4, and more memory is left: more than twice the tokens.
    assert b8.token_capacity > 2 * b4.token_capacity



def test_kv_capacity_is_what_vllm_logs_for_the_same_deployment():
    """vLLM V1 serving Llama-3.1-8B-Instruct on one 80 GB GPU at gpu_memory_utilization 0.9 and the default
    8,192-token budget logs "total_gpu_memory (79.11GiB) x gpu_memory_utilization (0.90) = 71.20GiB; model weights
    take 14.99GiB; non_torch_memory takes 0.35GiB; PyTorch activation peak memory takes 1.24GiB; the rest of the
    memory reserved for KV Cache is 54.62GiB" and "GPU KV cache size: 447,088 tokens" (a V1 startup log quoted in
    public deployment guides). The H100 card reports 81,559 MiB, 0.7% more than that log's total."""
    b = _budget("llama-3.1-8b", "h100", Plan())
    gib = 2**30
    assert b.weight_bytes / gib == pytest.approx(14.99, abs=0.05)
    assert b.activation_bytes / gib == pytest.approx(1.24 + 0.35, abs=0.05)
    assert b.token_capacity == pytest.approx(447_088, rel=0.02)


@pytest.mark.parametrize("tp,util,weights_gib,kv_gib,kv_tokens", [
    (1, 0.25, 14.2488, 5.01, 93_872), (1, 0.5, 14.2488, 24.83, 464_848), (2, 0.5, 7.1217, 31.83, 1_192_160)])
def test_kv_capacity_is_what_vllm_v1_logs_for_qwen2_7b_on_a100(tp, util, weights_gib, kv_gib, kv_tokens):
    """vLLM 0.10.1.1 (V1) serving Qwen2-7B-Instruct on A100 80GB, max_model_len 16384, the default 2,048-token
    budget, at TP1 and TP2 (startup logs published in github.com/dennislee22/vLLM-benchmarking, log/
    vllm-7B-1gpuA10080GB-{0.25,0.5}GRAM.log and vllm-7B-2gpuA10080GB-0.5GRAM-same-node.log): "Model loading took
    X GiB", "Available KV cache memory: Y GiB", "GPU KV cache size: Z tokens". The TP2 case is the one a TP split
    of the weights, the KV heads and the activation reserve all enter; it is within 0.3%. At 0.25 of the GPU the
    KV cache is a quarter of what is usable, so the activation reserve's error shows most (-2.6%)."""
    model = load_model(str(FIXTURES / "qwen2-7b-instruct.config.json"))
    b = memory_budget(model, load_gpu("a100"), Plan(tp=tp), gpu_memory_utilization=util, block_size=16,
                      max_batched_tokens=2048, max_num_seqs=256)
    gib = 2**30
    assert b.weight_bytes / gib == pytest.approx(weights_gib, rel=0.01)
    assert b.kv_bytes / gib == pytest.approx(kv_gib, rel=0.05)
    assert b.token_capacity == pytest.approx(kv_tokens, rel=0.05)


def test_llama_70b_bf16_fits_tp2_on_two_h100_at_the_default_utilization():
    """vLLM serves Llama-3.1-70B in BF16 at TP2 on 2 x H100 80GB at gpu_memory_utilization 0.9: 65.7 GiB of weights
    per GPU leave a few GiB of KV cache (GPU memory read in GiB as the device reports it, not 80e9 bytes)."""
    b = _budget("llama-3.1-70b", "h100", Plan(tp=2))
    assert b.weight_bytes / 2**30 == pytest.approx(65.7, abs=0.1)
    assert 15_000 < b.token_capacity < 40_000


def test_pipeline_parallel_run():
    s = sim.run(model="llama-3.1-405b", gpu="h100", tp=8, pp=2, num_gpus=16,
                **{"workload.num_requests": 40, "workload.duration_s": None}).summary
    assert s["num_finished"] == 40


def test_tp8_inside_one_node_beats_tp8_over_two_nodes():
    """NVLink inside a node against InfiniBand between nodes: the all-reduces of a spread TP group cost more."""
    tpot = {}
    for tp_nodes in (1, 2):
        s = sim.run(model="llama-3.1-70b", gpu="h100", tp=8, num_gpus=8, tp_nodes=tp_nodes,
                    **{"workload.arrival": "poisson", "workload.rate": 1.0, "workload.num_requests": 100,
                       "workload.duration_s": None}).summary
        tpot[tp_nodes] = s["tpot_p50_s"]
    print(f"\nLlama-3.1-70B TP8 median TPOT: one node {tpot[1] * 1e3:.1f} ms, two nodes {tpot[2] * 1e3:.1f} ms")
    assert tpot[1] < 0.9 * tpot[2]


def test_pipeline_micro_batches_keep_every_stage_busy_under_load():
    """PP=2 runs two micro-batches (virtual engines): at saturation it serves about what two TP4 replicas do (about
    10% less: the activation sends between stages, and micro-batches that never carry exactly equal work). A token
    still traverses both stages, so PP never decodes faster than TP over the same GPUs."""
    def summary(rate, **plan):
        return sim.run(model="llama-3.1-70b", gpu="h100", num_gpus=8,
                       **plan, **{"workload.arrival": "poisson", "workload.rate": rate, "workload.num_requests": 600,
                                  "workload.duration_s": None}).summary

    heavy_pp, heavy_dp = summary(30.0, tp=4, pp=2), summary(30.0, tp=4, replicas=2)
    assert 0.85 * heavy_dp["output_tokens_per_s"] < heavy_pp["output_tokens_per_s"] <= heavy_dp["output_tokens_per_s"]
    assert heavy_pp["gpu_busy_fraction"] > 0.9  # no stage idles when both micro-batches have work
    light_pp, light_dp, light_tp8 = summary(0.5, tp=4, pp=2), summary(0.5, tp=4, replicas=2), summary(0.5, tp=8)
    assert light_pp["tpot_p50_s"] >= light_dp["tpot_p50_s"]  # plus the activation send between stages
    assert light_pp["tpot_p50_s"] > 1.2 * light_tp8["tpot_p50_s"]


def test_pcie_nodes_make_tensor_parallelism_costlier_than_nvlink():
    from sim.cost import IterationCost
    from sim.hardware import Cluster, load_fabric, load_node

    model = load_model("llama-3.1-70b")
    step = {}
    for node in ("hgx-8gpu", "pcie-8gpu"):
        cluster = Cluster(load_gpu("h100"), load_node(node), load_fabric("ib-ndr-400"), 8)
        step[node] = IterationCost(model, cluster, Plan(tp=8)).step_time([(2048, 0)], 0, 0)
    # 2 all-reduces x 80 layers of 2048 x 8192 x 2 bytes at 64 GB/s instead of 450 GB/s per direction
    assert step["pcie-8gpu"] > 1.3 * step["hgx-8gpu"]


def test_cross_node_all_reduce_takes_the_faster_of_ring_and_tree():
    from sim.hardware import Cluster, load_fabric, load_node
    from sim.hardware.calibration import load_calibration
    from sim.hardware.collective import allreduce_model

    cluster = Cluster(load_gpu("h100"), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 64)
    calib, link = load_calibration("h100"), load_gpu("h100").scale_up_gbps
    ar = allreduce_model(cluster, calib, link, 64)  # 8 nodes of 8
    small, large = 4096.0, 256e6
    lat = cluster.fabric.latency_us * 1e-6
    ring_small = ar.inter.time(small / 8, 2 * 7 / 8)
    tree_small = lat * 2 * 3 + 2 * (small / 8) / ar.inter.bw_bytes_per_s
    assert ar.time(small) == pytest.approx(ar.intra.time(small, 2 * 7 / 8) + min(ring_small, tree_small))
    assert tree_small < ring_small  # few bytes: the tree's 6 hops beat the ring's 14
    ring_large = ar.inter.time(large / 8, 2 * 7 / 8)
    assert ar.time(large) == pytest.approx(ar.intra.time(large, 2 * 7 / 8) + ring_large)  # many bytes: the ring
