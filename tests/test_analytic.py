"""Cases with known answers."""

import numpy as np
import polars as pl
import pytest

import sim
from helpers import synthetic
from sim import EngineConfig
from sim.cost import IterationCost
from sim.hardware import Cluster, load_fabric, load_gpu, load_node
from sim.model import load_model
from sim.parallel import Plan


def test_lone_request_ttft_and_e2e_match_the_cost_model():
    prompt, output = 3000, 50
    eng = EngineConfig(max_num_batched_tokens=8192)
    result = sim.run(synthetic("llama-3.1-8b", "h100", n=1, input_len=f"fixed:{prompt}",
                               output_len=f"fixed:{output}", engine=eng))
    row = result.requests.row(0, named=True)
    cluster = Cluster(load_gpu("h100"), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 1)
    cost = IterationCost(load_model("llama-3.1-8b"), cluster, Plan(), **eng.cost_args())
    prefill = cost.step_time([(prompt, 0)], 0, 0, num_logits=1)
    # Decode step i (1..n-1) attends over the prompt, the tokens generated before it and its own new token.
    decodes = cost.decode_times(1, np.arange(prompt + 1, prompt + output))
    assert row["queue_delay_s"] == 0.0
    assert row["ttft_s"] == pytest.approx(prefill, rel=1e-12)
    assert row["e2e_s"] == pytest.approx(prefill + decodes.sum(), rel=1e-12)
    assert len(decodes) == output - 1
    assert prefill > cost.step_overhead_s


def test_lone_request_ttft_chunked_is_the_sum_of_its_chunks():
    prompt, chunk = 2000, 512
    eng = EngineConfig(max_num_batched_tokens=chunk)
    result = sim.run(synthetic(n=1, input_len=f"fixed:{prompt}", output_len="fixed:2", engine=eng))
    cluster = Cluster(load_gpu("h100"), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 1)
    cost = IterationCost(load_model("llama-3.1-8b"), cluster, Plan(), **eng.cost_args())
    expected = 0.0
    for start in range(0, prompt, chunk):
        c = min(chunk, prompt - start)
        expected += cost.step_time([(c, start)], 0, 0, num_logits=int(start + c == prompt))
    assert result.requests["ttft_s"][0] == pytest.approx(expected, rel=1e-12)


def test_below_saturation_throughput_equals_the_arrival_rate():
    result = sim.run(synthetic("llama-3.1-8b", "h100", rate=2.0, n=1500, seed=5))
    df = result.requests
    offered = (df.height - 1) / (df["arrival_s"].max() - df["arrival_s"].min())
    assert result.summary["throughput_rps"] == pytest.approx(offered, rel=0.02)
    assert result.summary["queue_delay_p50_s"] < 0.05


def test_above_saturation_queueing_delay_grows_without_bound():
    delays = []
    for n in (300, 600, 1200):
        result = sim.run(synthetic("llama-2-70b", "a100", tp=2, rate=20.0, n=n, seed=1,
                                   engine=EngineConfig(max_num_seqs=64, max_num_batched_tokens=512)))
        df = result.requests.sort("arrival_s")
        delays.append(result.summary["queue_delay_mean_s"])
        q = df["queue_delay_s"].to_numpy()
        tenth = len(q) // 10
        assert np.nanmean(q[-tenth:]) > 3 * np.nanmean(q[:tenth])  # later arrivals wait longer and longer
    assert delays[0] < delays[1] < delays[2]
    assert delays[2] > 3 * delays[0]  # roughly linear in the number of requests queued


def test_twice_the_replicas_halve_the_per_replica_load():
    runs = {}
    for replicas in (2, 4):
        runs[replicas] = sim.run(synthetic("llama-3.1-8b", "h100", rate=6.0, n=1200, seed=2, replicas=replicas))
    per_replica = {k: v.requests.group_by("replica").len()["len"].mean() for k, v in runs.items()}
    assert per_replica[2] == pytest.approx(2 * per_replica[4], rel=0.01)
    # Little's law: requests in service per replica = sum of latencies / (duration x replicas).
    conc = {k: v.requests["e2e_s"].sum() / (v.summary["duration_s"] * k) for k, v in runs.items()}
    assert conc[2] / conc[4] == pytest.approx(2.0, rel=0.15)
    tokens = {k: v.requests.group_by("replica").agg(pl.col("output_tokens").sum())["output_tokens"].mean()
              for k, v in runs.items()}
    assert tokens[2] / tokens[4] == pytest.approx(2.0, rel=0.05)
    assert runs[2].summary["throughput_rps"] == pytest.approx(runs[4].summary["throughput_rps"], rel=0.02)


def test_mla_prefill_is_plain_multi_head_attention_and_decode_the_absorbed_form():
    """DeepSeek-V3 (MLA): a prefill chunk attends with 128 heads of 192-dim keys and 128-dim values (the latents
    up-projected, as vLLM's MLA backends do for prefill): 2 x (192 + 128) FLOPs per head and (query, key) pair; a
    decode attends in the latent space (576-dim keys, 512-dim values), 3.4 times the FLOPs per pair, but reads only
    the 576-element latent per cached token."""
    model = load_model("deepseek-v3")
    cluster = Cluster(load_gpu("h200"), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 8)
    cost = IterationCost(model, cluster, Plan(tp=8))
    heads = model.num_heads // 8
    assert cost.prefill_flops_per_pair == 2 * heads * (128 + 64 + 128)
    assert cost.flops_per_pair == 2 * heads * (576 + 512)
    assert cost.flops_per_pair / cost.prefill_flops_per_pair == pytest.approx(3.4)
    assert cost.kv_read_per_token == cost.prefill_kv_read_per_token == 576 * 2  # BF16 latents (the card's kv_dtype)
    # A lone 8k-token prefill's attention is compute-bound at the plain form's FLOPs (the roofline: a GPU without
    # measured attention tables; on H200 the measured FlashAttention table costs it, as a 192-dim head).
    assert cost.kernel_sources()["attention"].startswith("prefill: measured")
    cluster = Cluster(load_gpu("mi300x"), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 8)
    cost = IterationCost(model, cluster, Plan(tp=8))
    p = 8192
    flop_rate = cluster.gpu.peak_flops("bf16") * cost.calib.attention["prefill_compute_eff"]
    plain = model.num_layers * cost.prefill_flops_per_pair * p * (p + 1) / 2 / flop_rate
    attn = cost.breakdown([(p, 0)], 0, 0)["prefill_attention_s"]
    assert attn == pytest.approx(plain + model.num_layers * cost.calib.attention["overhead_s"], rel=1e-9)
    # A chunk after cached context also up-projects that context's latents again: more than the pairs alone.
    later = cost.breakdown([(1024, 7168)], 0, 0)["prefill_attention_s"]
    pairs_only = model.num_layers * (cost.prefill_flops_per_pair * 1024 * (7168 + 1025 / 2) / flop_rate
                                     + cost.calib.attention["overhead_s"])
    assert later > pairs_only
