"""Hardware cards as typed records: a GPU, a node (scale-up domain), a scale-out fabric."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GPUSpec:
    name: str
    bf16_tflops: float
    fp8_tflops: float
    hbm_gb: float
    hbm_tbps: float
    scale_up_gbps: float
    pcie_gbps: float
    power_w: float
    price_per_hour_usd: float
    calibration: str
    display_name: str = ""
    source: str = ""

    def peak_flops(self, dtype: str) -> float:
        """Dense tensor-core FLOP/s for GEMMs whose weights are stored in `dtype`."""
        return (self.fp8_tflops if dtype in ("fp8", "mxfp4", "int4") else self.bf16_tflops) * 1e12

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gb * 1e9

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_tbps * 1e12


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    gpus_per_node: int
    host_memory_gb: float
    link: str = "nvlink"  # what joins the GPUs inside the node: nvlink (NVLink/NVSwitch, Infinity Fabric) or pcie
    display_name: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class FabricSpec:
    name: str
    gbps_per_gpu: float
    latency_us: float
    display_name: str = ""
    source: str = ""
