"""Collective latency from measured curves: vLLM's custom all-reduce (inside a CUDA graph, or eager) and NCCL's
all-reduce, all-to-all, all-gather and reduce-scatter.

vLLM's tensor-parallel all-reduce uses its own one-shot/two-shot kernel for messages up to 8 MiB between the GPUs
of one NVLink node, and NCCL beyond (vllm/distributed/device_communicators/custom_all_reduce.py, max_size =
8192 * 1024). Inside a CUDA graph the custom kernel takes about 4-5 us on H100 for small messages; eagerly about
20 us, the launch and synchronisation it then pays.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


from sim.cost.kernels.shipped import shipped
from sim.cost.kernels.curve import Curve

CUSTOM_AR_MAX_BYTES = 8192 * 1024  # vLLM's custom all-reduce takes messages up to this size


@dataclass(frozen=True)
class MeasuredAllReduce:
    """The all-reduce of `n` GPUs inside one NVLink node as vLLM runs it."""

    n: int
    graph: Curve
    eager: Curve
    nccl: Curve
    source: str

    def time(self, nbytes: float, eager: bool = False) -> float:
        if nbytes <= CUSTOM_AR_MAX_BYTES:
            return (self.eager if eager else self.graph).time(nbytes)
        return self.nccl.time(nbytes)


def _measured_group(n: int) -> int:
    """The measured group size (2, 4 or 8 GPUs) nearest to `n`, the smaller on a tie."""
    return min((2, 4, 8), key=lambda g: (abs(g - n), g))


@cache
def load_allreduce(name: str, n: int) -> MeasuredAllReduce | None:
    """The measured all-reduce of `n` GPUs (the nearest measured group size: 2, 4 or 8), or None without tables."""
    z = shipped(name, "ar_graph_2_bytes")
    if z is None:
        return None
    m = _measured_group(n)
    curve = lambda kind: Curve(z[f"ar_{kind}_{m}_bytes"], z[f"ar_{kind}_{m}_log_s"])  # noqa: E731
    return MeasuredAllReduce(n, curve("graph"), curve("eager"), curve("nccl"), str(z["source"]))


@dataclass(frozen=True)
class MeasuredAllToAll:
    """NCCL's all-to-all of `n` GPUs inside one NVLink node: `time(bytes of each GPU's whole buffer)`."""

    n: int
    curve: Curve
    source: str

    def __call__(self, nbytes: float) -> float:
        return self.curve.time(nbytes)


def _nccl_curve(z, prefix: str, n: int) -> tuple[Curve, str]:
    m = _measured_group(n)
    return Curve(z[f"{prefix}_{m}_bytes"], z[f"{prefix}_{m}_log_s"]), f"{str(z['source']).split(',')[0]}, " \
        f"{z[f'{prefix}_source']}"


@cache
def load_alltoall(name: str, n: int) -> MeasuredAllToAll | None:
    """The measured all-to-all of `n` GPUs (the nearest measured group size: 2, 4 or 8), or None without tables."""
    z = shipped(name, "a2a_2_bytes")
    if z is None:
        return None
    return MeasuredAllToAll(n, *_nccl_curve(z, "a2a", n))


@dataclass(frozen=True)
class MeasuredGatherScatter:
    """Data-parallel attention feeding an FFN split over all `n` GPUs, as vLLM's all-gather/reduce-scatter
    dispatcher does (vllm/distributed/device_communicators/all2all.py, AgRsAll2AllManager; the fallback when data
    parallelism runs without --enable-expert-parallel, vllm/model_executor/layers/fused_moe/all2all_utils.py): each
    GPU gathers every rank's tokens (all_gatherv) before the FFN and reduce-scatters the outputs back after it. `time(bytes of the gathered
    tokens)`: NCCL's all-gather of that buffer plus its reduce-scatter; the same eagerly or in a CUDA graph."""

    n: int
    gather: Curve
    scatter: Curve
    source: str

    def time(self, nbytes: float, eager: bool = False) -> float:
        return self.gather.time(nbytes) + self.scatter.time(nbytes)


@cache
def load_gather_scatter(name: str, n: int) -> MeasuredGatherScatter | None:
    """The measured all-gather + reduce-scatter of `n` GPUs (nearest measured group size), or None without tables
    (or without those measurements)."""
    z = shipped(name, "ag_2_bytes")
    if z is None or "rs_2_bytes" not in z:
        return None
    gather, source = _nccl_curve(z, "ag", n)
    scatter, _ = _nccl_curve(z, "rs", n)
    return MeasuredGatherScatter(n, gather, scatter, source)
