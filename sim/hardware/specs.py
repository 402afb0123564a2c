"""Hardware cards as typed records: a GPU, a node (scale-up domain), a scale-out fabric."""

from __future__ import annotations

from dataclasses import dataclass


IDLE_FRACTION = 80.3 / 700.0


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
    # Memory as the device reports it (nvidia-smi's total, MiB): what vLLM's gpu_memory_utilization is a fraction
    # of. 0: the marketed size read as GiB, less the ~0.44% the driver keeps (an H100 "80 GB" reports 81,559 of
    # 81,920 MiB).
    memory_mib: float = 0.0
    # Measured kernel tables for this GPU (hardware/calibration/kernels/<name>.npz); "" costs every kernel by the
    # roofline with the `calibration` family's efficiencies.
    kernel_tables: str = ""
    # Draw between steps (driver loaded, clocks idle). 0: IDLE_FRACTION of power_w, the one idle board we have a
    # measurement of (an H200 SXM at 80.3 W of its 700 W; see hardware/gpus/h200.toml).
    idle_power_w: float = 0.0

    @property
    def idle_watts(self) -> float:
        return self.idle_power_w or IDLE_FRACTION * self.power_w

    def peak_flops(self, dtype: str) -> float:
        """Dense tensor-core FLOP/s of GEMMs that multiply in `dtype`: fp8 (W8A8), else bf16 (16-bit weights, and
        weight-only formats, which dequantize to BF16 in the kernel)."""
        return (self.fp8_tflops if dtype == "fp8" else self.bf16_tflops) * 1e12

    @property
    def hbm_bytes(self) -> float:
        """Bytes the device reports (not the marketed decimal GB: an "80 GB" card has about 80 GiB)."""
        if self.memory_mib:
            return self.memory_mib * 2**20
        return self.hbm_gb * 2**30 * (81559 / 81920)

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_tbps * 1e12


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    gpus_per_node: int
    host_memory_gb: float
    link: str = "nvlink"  # what joins the GPUs inside the node: nvlink (NVLink/NVSwitch, Infinity Fabric) or pcie
    # What the node draws besides its GPUs (CPUs, memory, NICs, switches, fans) while it serves; 0: not known.
    overhead_power_w: float = 0.0
    display_name: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class FabricSpec:
    name: str
    gbps_per_gpu: float
    latency_us: float
    display_name: str = ""
    source: str = ""
