"""Engine presets: what a serving engine of a given generation does that moves latency, each with its source.

A preset sets the defaults of the engine knobs it governs (a knob set explicitly in the scenario wins) and the
step-cost rules that are not knobs: which steps run as CUDA graphs, what the CPU adds per step and per sequence, and
how much KV a newly admitted request reserves.

- vllm-v1 (vLLM 0.8 and later; the default): chunked prefill always on (vllm/v1/core/sched/scheduler.py has no
  other mode); a request reserves blocks only for the tokens scheduled in the step (KVCacheManager.allocate_slots);
  steps of up to 512 tokens, decode and mixed, run as piecewise CUDA graphs (compilation_config's
  max_cudagraph_capture_size), larger ones eagerly; no admission watermark.
- vllm-v0 (vLLM 0.5/0.6): chunked prefill off unless asked (its default for max_model_len <= 32k); a request
  reserves blocks for its whole prompt at admission (BlockSpaceManager.allocate); only decode steps of up to 256
  sequences run as CUDA graphs (_BATCH_SIZES_TO_CAPTURE), prefill and mixed steps eagerly; a 1% watermark; and the
  CPU work of its per-sequence Python loops (sampling metadata, output processing) grows each step by about 0.4 ms
  per running sequence, as vLLM 0.6 measured on H100 shows (the public measurements summarised in issue 12).
  An eager step cannot finish before the CPU has launched its kernels: about 0.3 ms per layer, read from vLLM
  PR #1440 (Llama-2-7B, 32 layers: 12 ms per eager decode step against 10.5 ms as a CUDA graph, so the CPU, not the
  GPU, set the eager step; 12 ms less the 2 ms step and 0.4 ms sequence overheads over 32 layers). This floor is why
  its prefill time stops shrinking with TP: more GPUs cut the GPU's work, not the CPU's.
- vllm-v1's steps too large for its graphs are compiled by torch.compile (fewer, fused kernels) and compute-bound
  (over 512 tokens): their launches are assumed to hide under the GPU's work (no floor).

The per-step CPU overhead of both (2 ms) is an assumption, not a measurement: set engine.step_overhead_s from
your own engine's traces.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EnginePreset:
    name: str
    chunked_prefill: bool  # the default (vllm-v1 refuses to turn it off)
    chunked_prefill_optional: bool
    whole_prompt_admission: bool
    watermark: float
    graph_max_tokens: int  # largest step run as a CUDA graph
    graph_prefill: bool  # whether steps with prefill chunks can run as CUDA graphs
    step_overhead_s: float
    seq_overhead_s: float  # CPU time per sequence in the step
    eager_layer_s: float  # CPU time to launch one layer's kernels in a step run outside a CUDA graph


PRESETS = {
    "vllm-v1": EnginePreset("vllm-v1", chunked_prefill=True, chunked_prefill_optional=False,
                            whole_prompt_admission=False, watermark=0.0, graph_max_tokens=512, graph_prefill=True,
                            step_overhead_s=0.002, seq_overhead_s=0.0, eager_layer_s=0.0),
    "vllm-v0": EnginePreset("vllm-v0", chunked_prefill=False, chunked_prefill_optional=True,
                            whole_prompt_admission=True, watermark=0.01, graph_max_tokens=256, graph_prefill=False,
                            step_overhead_s=0.002, seq_overhead_s=0.4e-3, eager_layer_s=0.3e-3),
}
