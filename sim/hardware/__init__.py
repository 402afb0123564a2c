from sim.hardware.catalog import gpu_names, load_fabric, load_gpu, load_node
from sim.hardware.cluster import Cluster
from sim.hardware.specs import FabricSpec, GPUSpec, NodeSpec

__all__ = ["Cluster", "FabricSpec", "GPUSpec", "NodeSpec", "gpu_names", "load_fabric", "load_gpu", "load_node"]
