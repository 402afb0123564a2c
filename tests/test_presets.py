"""Engine presets: each difference between vllm-v1 and vllm-v0 shows where the engines differ (admission, CUDA
graphs and the all-reduce path, per-sequence CPU cost), against what the preset's rules imply."""

import pytest
from typer.testing import CliRunner

import sim
from helpers import run_checked, synthetic
from sim import EngineConfig
from sim.cli import app
from sim.cost.iteration import IterationCost
from sim.hardware import Cluster, load_gpu, load_node
from sim.model import load_model
from sim.parallel.plan import Plan
from sim.serving.presets import PRESETS


def _cost(preset: str, model: str = "llama-3.1-8b", tp: int = 1) -> IterationCost:
    cluster = Cluster(load_gpu("h100"), load_node("dgx-h100"), None, tp)
    return IterationCost(load_model(model), cluster, Plan(tp=tp), **EngineConfig(preset=preset).cost_args())


def test_v0_reserves_the_whole_prompt_at_admission_v1_only_the_scheduled_chunk():
    used = {}
    for preset in PRESETS:
        eng = EngineConfig(preset=preset, chunked_prefill=True, max_num_batched_tokens=512,
                           enable_prefix_caching=False, num_gpu_blocks_override=2000)
        scenario = synthetic(rate=1.0, n=1, engine=eng, input_len="fixed:4096", output_len="fixed:4")
        first = []
        run_checked(scenario, observer=lambda rep: first.append(rep.lanes[0].kv.used) if not first else None)
        used[preset] = first[0]
    assert used["vllm-v1"] == 512 // 16  # the first chunk's blocks
    assert used["vllm-v0"] == 4096 // 16  # the whole prompt's


def test_whole_prompt_admission_holds_back_what_v1_admits_and_later_preempts():
    # Two 4096-token prompts, 300 blocks (4,800 tokens): both fit one chunk at a time, not both whole.
    out = {}
    for preset in PRESETS:
        eng = EngineConfig(preset=preset, chunked_prefill=True, max_num_batched_tokens=512,
                           enable_prefix_caching=False, num_gpu_blocks_override=300)
        scenario = synthetic(rate=100.0, n=2, engine=eng, input_len="fixed:4096", output_len="fixed:64",
                             arrival="poisson", seed=1)
        out[preset] = sim.run(scenario).summary
        assert out[preset]["num_finished"] == 2
    assert out["vllm-v1"]["preemptions"] >= 1
    assert out["vllm-v0"]["preemptions"] == 0


def test_v0_runs_prefill_steps_eagerly_and_cannot_beat_its_cpu_launches():
    v0, v1 = _cost("vllm-v0"), _cost("vllm-v1")
    layers = v0.model.num_layers
    floor = layers * PRESETS["vllm-v0"].eager_layer_s
    small = [(64, 0)]
    # A short prefill: the GPU's work is well under the CPU's launches, so v0's step is the floor (+ overheads).
    assert v1.step_time(small, 0, 0) < floor
    assert v0.step_time(small, 0, 0) == pytest.approx(floor + v0.step_overhead_s + 0.4e-3, rel=1e-12)
    # A decode step of the same size runs as a CUDA graph on both: no floor, only v0's per-sequence CPU cost.
    kv = 64 * 1000
    assert v0.decode_time(64, kv) - v1.decode_time(64, kv) == pytest.approx(64 * 0.4e-3, rel=1e-9)
    # Past v0's largest captured decode batch (256) the floor applies, and the closed form agrees with the step.
    assert v0.decode_time(300, 300 * 1000) >= floor + v0.step_overhead_s
    assert v0.decode_time(300, 300 * 1000) == pytest.approx(v0.step_time([], 300, 300 * 1000), rel=1e-9)


def test_the_all_reduce_path_follows_the_graph_rule():
    # TP8 on H100: a 256-token prefill step is a CUDA graph on v1 (vLLM's custom all-reduce, graph-captured) and
    # eager on v0; a 600-token step is eager on both. The difference is the measured eager-minus-graph latency of
    # every all-reduce (two per layer), plus v0's per-sequence CPU cost.
    v0, v1 = _cost("vllm-v0", "llama-3.1-70b", 8), _cost("vllm-v1", "llama-3.1-70b", 8)
    ar = v1.allreduce
    h, layers = v1.model.hidden_size, v1.model.num_layers
    for tokens, graph_on_v1 in ((256, True), (600, False)):
        nbytes = tokens * h * 2.0
        per_call = ar.time(nbytes, True) - ar.time(nbytes, False) if graph_on_v1 else 0.0
        gap = v0._rank_linear(tokens, 1, True) - v1._rank_linear(tokens, 1, True)
        assert gap == pytest.approx(2 * layers * per_call, rel=1e-6, abs=1e-12)
    assert ar.time(256 * h * 2.0, True) > ar.time(256 * h * 2.0, False)  # eager launches cost more than replay


def test_v0_prefill_time_stops_shrinking_with_tp_where_v1_keeps_shrinking():
    # A lone 1024-token prompt of an 8B model: at TP8 the GPU's share (about 9 ms) falls under v0's launches of 32
    # layers (9.6 ms), so more GPUs stop helping there; v1's steps keep the GPU's time.
    lone = [(1024, 0)]
    ttft = {p: {tp: _cost(p, "llama-3.1-8b", tp).step_time(lone, 0, 0) for tp in (1, 2, 4, 8)} for p in PRESETS}
    v1, v0 = ttft["vllm-v1"], ttft["vllm-v0"]
    assert v1[8] < v1[4] < v1[2] < v1[1]
    floor = load_model("llama-3.1-8b").num_layers * PRESETS["vllm-v0"].eager_layer_s
    assert v0[8] == pytest.approx(floor + 0.002 + 0.4e-3, rel=1e-12)  # held at the CPU's launches
    assert v0[8] / v0[4] > v1[8] / v1[4]
    for tp in (1, 2, 4, 8):
        assert v0[tp] >= v1[tp]


def test_presets_are_refused_or_recorded():
    with pytest.raises(sim.FleetsimError, match="vllm-v1 always chunks prefills"):
        EngineConfig(chunked_prefill=False)
    with pytest.raises(sim.FleetsimError, match="engine.preset: expected one of vllm-v1, vllm-v0"):
        EngineConfig(preset="sglang")
    eng = EngineConfig(preset="vllm-v0")
    assert not eng.chunked and eng.watermark_fraction == 0.01 and eng.overhead_s == 0.002
    assert EngineConfig(preset="vllm-v0", watermark=0.0, step_overhead_s=0.01).overhead_s == 0.01
    res = CliRunner().invoke(app, ["run", "--engine", "vllm-v9", "--num-requests", "3"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "engine.preset" in res.output
    res = CliRunner().invoke(app, ["run", "--engine", "vllm-v0", "--num-requests", "3", "--json"])
    assert res.exit_code == 0, res.output
