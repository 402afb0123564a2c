"""Engine knobs of one replica, named as vLLM names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.core.checks import number
from sim.errors import FleetsimError
from sim.serving.presets import PRESETS, EnginePreset

POLICIES = ("continuous", "static")
SCHEDULING = ("fcfs", "program")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    # Which engine generation to model (sim/serving/presets.py): vllm-v1 (default) or vllm-v0. It sets the defaults
    # of chunked_prefill, watermark and step_overhead_s (None below: the preset's) and how steps are costed.
    preset: str = "vllm-v1"
    policy: str = "continuous"  # continuous (iteration-level, vLLM/Orca) or static (request-level batches)
    # Per engine: each attention-DP rank and pipeline micro-batch of a replica has its own, as each vLLM engine core.
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192  # per-step token budget (vLLM v1 default for online serving on H100)
    chunked_prefill: bool | None = None  # default: the preset's (vllm-v1: always on)
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = True
    watermark: float | None = None  # fraction of KV blocks kept free when admitting (default: the preset's)
    # CPU scheduling + input preparation + launch per step (default: the preset's, an assumption: vLLM v1 overlaps
    # much of it with the GPU); set it from your own engine's traces.
    step_overhead_s: float | None = None
    num_gpu_blocks_override: int | None = None  # fix the KV capacity in blocks (as vLLM's knob of that name)
    fast_forward: bool = True  # advance runs of identical decode steps in one event (same results, faster)
    # Queue order: fcfs (by request arrival) or program (by the arrival of the agent job a call belongs to, so a
    # job's later calls go ahead of newer jobs' first ones, as Continuum schedules).
    scheduling: str = "fcfs"
    # Host memory per GPU for KV copies when agent jobs offload (kv_policy offload); default: half the node's host
    # memory, shared by its GPUs.
    kv_offload_gb: float | None = None

    @property
    def spec(self) -> EnginePreset:
        return PRESETS[self.preset]

    @property
    def chunked(self) -> bool:
        """Whether prefills are chunked (the knob, or the preset's default)."""
        return self.spec.chunked_prefill if self.chunked_prefill is None else self.chunked_prefill

    @property
    def watermark_fraction(self) -> float:
        return self.spec.watermark if self.watermark is None else self.watermark

    @property
    def overhead_s(self) -> float:
        return self.spec.step_overhead_s if self.step_overhead_s is None else self.step_overhead_s

    def cost_args(self) -> dict[str, Any]:
        """The step-cost rules of this engine (IterationCost's keyword arguments)."""
        p = self.spec
        return {"step_overhead_s": self.overhead_s, "seq_overhead_s": p.seq_overhead_s,
                "graph_max_tokens": p.graph_max_tokens, "graph_prefill": p.graph_prefill,
                "eager_layer_s": p.eager_layer_s}

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise FleetsimError(f"engine.preset: expected one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.chunked_prefill is not None and not isinstance(self.chunked_prefill, bool):
            raise FleetsimError(f"engine.chunked_prefill: expected true or false, got {self.chunked_prefill!r}")
        if self.chunked_prefill is False and not self.spec.chunked_prefill_optional:
            raise FleetsimError(f"engine.chunked_prefill: {self.preset} always chunks prefills "
                                f"(vllm/v1/core/sched/scheduler.py); for whole-prompt prefill steps use the vllm-v0 "
                                f"preset (--engine vllm-v0)")
        for name in ("enable_prefix_caching", "fast_forward"):
            if not isinstance(getattr(self, name), bool):
                raise FleetsimError(f"engine.{name}: expected true or false, got {getattr(self, name)!r}")
        if self.scheduling not in SCHEDULING:
            raise FleetsimError(f"engine.scheduling: expected one of {', '.join(SCHEDULING)}, got '{self.scheduling}'")
        if self.policy not in POLICIES:
            raise FleetsimError(f"engine.policy: expected one of {', '.join(POLICIES)}, got '{self.policy}'")
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FleetsimError(f"engine.{name}: expected a positive integer, got {value!r}")
        if not (isinstance(self.gpu_memory_utilization, (int, float)) and not isinstance(self.gpu_memory_utilization, bool)
                and 0.0 < self.gpu_memory_utilization <= 1.0):
            raise FleetsimError(f"engine.gpu_memory_utilization: expected a fraction in (0, 1], "
                                f"got {self.gpu_memory_utilization!r}")
        if self.watermark is not None and not 0.0 <= self.watermark < 0.5:
            raise FleetsimError(f"engine.watermark: expected a fraction in [0, 0.5), got {self.watermark!r}")
        if self.num_gpu_blocks_override is not None and (
                not isinstance(self.num_gpu_blocks_override, int) or self.num_gpu_blocks_override < 1):
            raise FleetsimError(f"engine.num_gpu_blocks_override: expected a positive integer, "
                                f"got {self.num_gpu_blocks_override!r}")
        if self.kv_offload_gb is not None:
            number(self.kv_offload_gb, "engine.kv_offload_gb", low=0.0, low_open=True, high=1e6,
                   what="a positive number of GB per GPU (at most 1e6)")
        if self.step_overhead_s is not None:
            number(self.step_overhead_s, "engine.step_overhead_s", low=0.0, high=60.0,
                   what="seconds from 0 to 60")
        if self.chunked and self.max_num_batched_tokens < self.max_num_seqs:
            raise FleetsimError(
                f"engine.max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= engine.max_num_seqs "
                f"({self.max_num_seqs}) so that every running decode fits in a step's token budget")
