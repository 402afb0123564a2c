from sim.model.arch import ModelArch, MoESpec, MLASpec
from sim.model.catalog import load_model, model_names

__all__ = ["ModelArch", "MoESpec", "MLASpec", "load_model", "model_names"]
