"""Precision: the number formats a deployment stores its weights and KV cache in, and what a GEMM computes in.

Weights (`--weight-dtype`, every linear layer's weights; a card or checkpoint may keep its routed experts in
another format, as gpt-oss keeps MXFP4 experts beside BF16 attention):
- bf16, fp16: 16-bit weights and activations.
- fp8: W8A8, FP8 weights and activations (vLLM's fp8 and compressed-tensors float8 checkpoints): FP8 tensor cores.
- int8: W8A16, 8-bit integer weights dequantized to BF16 in the kernel.
- int4: W4A16 (GPTQ, AWQ, compressed-tensors pack-quantized): 4-bit weights dequantized to BF16 in the kernel.
- mxfp4: OCP microscaling FP4 weights (4 bits plus an 8-bit scale per 32), dequantized to BF16 on Hopper (vLLM's
  Marlin and Triton MXFP4 kernels are weight-only there).
KV cache (`--kv-dtype`): bf16, fp16 or fp8 (vLLM's kv_cache_dtype fp8).

A weight-only format reads fewer bytes but computes at the BF16 rate; W8A8 halves both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sim.errors import FleetsimError
from sim.model.arch import ModelArch

WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4", "mxfp4")
KV_DTYPES = ("bf16", "fp16", "fp8")
_COMPUTE = {"fp8": "fp8"}  # the rest compute in BF16 (16-bit, or dequantized in the kernel)


def compute_dtype(weight_dtype: str) -> str:
    """The format a GEMM over weights stored in `weight_dtype` multiplies in: fp8 for W8A8, else bf16."""
    return _COMPUTE.get(weight_dtype, "bf16")


def check_weight_dtype(value: str, field: str = "weight_dtype") -> str:
    if value not in WEIGHT_DTYPES:
        raise FleetsimError(f"{field}: expected one of {', '.join(WEIGHT_DTYPES)}, got {value!r}")
    return value


def check_kv_dtype(value: str, field: str = "kv_dtype") -> str:
    if value not in KV_DTYPES:
        raise FleetsimError(f"{field}: expected one of {', '.join(KV_DTYPES)}, got {value!r}")
    return value


def describe_precision(model: ModelArch) -> str:
    """One phrase for a report: "bf16 weights, mxfp4 experts, fp8 KV"."""
    parts = [f"{model.weight_dtype} weights"]
    if model.moe is not None and model.expert_weight_dtype not in (None, model.weight_dtype):
        parts.append(f"{model.expert_weight_dtype} experts")
    return ", ".join([*parts, f"{model.kv_dtype} KV"])


def with_precision(model: ModelArch, weight_dtype: str | None = None, kv_dtype: str | None = None) -> ModelArch:
    """The model stored in other formats: `weight_dtype` for every weight (experts included), `kv_dtype` for the KV
    cache; None keeps the card's."""
    changes: dict[str, Any] = {}
    if weight_dtype is not None:
        changes["weight_dtype"] = check_weight_dtype(weight_dtype)
        changes["expert_weight_dtype"] = None
    if kv_dtype is not None:
        changes["kv_dtype"] = check_kv_dtype(kv_dtype)
    return dataclasses.replace(model, **changes) if changes else model


def from_quantization_config(qc: dict[str, Any], origin: str) -> dict[str, str]:
    """The card fields (weight_dtype, expert_weight_dtype, kv_dtype) a Hugging Face config's quantization_config
    implies; a method fleetsim cannot read is refused, naming it."""
    where = f"{origin}: quantization_config"
    if not isinstance(qc, dict):
        raise FleetsimError(f"{where}: expected a JSON object, got {type(qc).__name__}")
    method = str(qc.get("quant_method", "")).lower()
    if method in ("fp8", "fbgemm_fp8"):
        return {"weight_dtype": "fp8"}
    if method == "mxfp4":  # gpt-oss: routed experts in MXFP4, the rest in BF16
        return {"expert_weight_dtype": "mxfp4"}
    if method in ("gptq", "awq", "awq_marlin", "gptq_marlin"):
        bits = qc.get("bits", qc.get("w_bit", 4))
        if bits not in (4, 8):
            raise FleetsimError(f"{where}: {method} with {bits}-bit weights; expected 4 or 8")
        return {"weight_dtype": "int4" if bits == 4 else "int8"}
    if method == "modelopt":
        algo = str(qc.get("quant_algo") or (qc.get("quantization") or {}).get("quant_algo", "")).upper()
        if algo == "FP8":
            out = {"weight_dtype": "fp8"}
            kv = str(qc.get("kv_cache_quant_algo") or "").upper()
            return {**out, "kv_dtype": "fp8"} if kv == "FP8" else out
        raise FleetsimError(f"{where}: modelopt quant_algo {algo or '(none)'} is not modelled; expected FP8")
    if method == "compressed-tensors":
        return _compressed_tensors(qc, where)
    raise FleetsimError(f"{where}: quant_method {method or '(none)'!r} is not modelled; expected one of fp8, "
                        f"fbgemm_fp8, mxfp4, gptq, awq, modelopt (FP8), compressed-tensors")


def _compressed_tensors(qc: dict[str, Any], where: str) -> dict[str, str]:
    """compressed-tensors (llm-compressor) checkpoints: the weights' scheme of the first config group."""
    groups = qc.get("config_groups") or {}
    if not isinstance(groups, dict) or not groups:
        raise FleetsimError(f"{where}: compressed-tensors without config_groups")
    group = next(iter(groups.values()))
    weights = (group or {}).get("weights") or {}
    bits, kind = weights.get("num_bits"), str(weights.get("type", "")).lower()
    acts = (group or {}).get("input_activations") or {}
    if bits == 8 and kind == "float":
        out = {"weight_dtype": "fp8" if acts.get("num_bits") == 8 else "int8"}
    elif bits == 4 and kind == "int":
        out = {"weight_dtype": "int4"}
    elif bits == 8 and kind == "int":
        # W8A8 INT8 runs on INT8 tensor cores at the FP8 rate on Hopper; fleetsim costs it as FP8.
        out = {"weight_dtype": "fp8" if acts.get("num_bits") == 8 else "int8"}
    else:
        raise FleetsimError(f"{where}: compressed-tensors weights of {bits}-bit {kind or '?'} are not modelled; "
                            f"expected 8-bit float, 8-bit int or 4-bit int")
    kv = qc.get("kv_cache_scheme") or {}
    if isinstance(kv, dict) and kv.get("num_bits") == 8:
        out["kv_dtype"] = "fp8"
    return out
