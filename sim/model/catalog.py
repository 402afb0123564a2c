"""Model cards: the shipped TOML catalog (by name or alias) and Hugging Face config.json files (by path)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from sim.core.json_file import read_json
from sim.core.paths import data_dir
from sim.core.toml_card import cards_in, read_toml, resolve_name
from sim.errors import FleetsimError
from sim.model.arch import MLASpec, ModelArch, MoESpec

_TOP_FIELDS = {
    "num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size",
    "max_context",
}


@cache
def _catalog() -> dict[str, dict[str, Any]]:
    return {name: read_toml(path) for name, path in cards_in(data_dir("models")).items()}


def model_names() -> list[str]:
    return sorted(_catalog())


def model_card(name: str) -> dict[str, Any]:
    return _catalog()[resolve_name(name, _catalog(), "model")]


def load_model(name_or_path: str) -> ModelArch:
    """A catalog model by name or alias, a model TOML card by path, or a Hugging Face config.json by path."""
    path = Path(name_or_path)
    if path.suffix in (".json", ".toml") or path.is_file():
        if path.suffix == ".json":
            return from_hf_config(path)
        return from_card(read_toml(path), str(path))
    canonical = resolve_name(name_or_path, _catalog(), "model")
    return from_card(_catalog()[canonical], canonical)


def from_card(card: dict[str, Any], origin: str) -> ModelArch:
    missing = sorted(_TOP_FIELDS - card.keys())
    if missing:
        raise FleetsimError(f"{origin}: model card lacks required field(s) {', '.join(missing)}")
    kwargs = {k: v for k, v in card.items() if k not in ("moe", "mla")}
    kwargs.setdefault("name", origin)
    kwargs["aliases"] = tuple(card.get("aliases", ()))
    try:
        moe = MoESpec(**card["moe"]) if "moe" in card else None
        mla = MLASpec(**card["mla"]) if "mla" in card else None
        arch = ModelArch(**kwargs, moe=moe, mla=mla)
    except TypeError as exc:
        raise FleetsimError(f"{origin}: bad model card: {exc}") from None
    for name in _TOP_FIELDS:
        value = getattr(arch, name)
        if not isinstance(value, int) or value <= 0:
            raise FleetsimError(f"{origin}: field '{name}' must be a positive integer, got {value!r}")
    arch.weight_bytes  # validates the dtype names early
    arch.kv_bytes_per_token
    return arch


def _hf_dtype(cfg: dict[str, Any]) -> str:
    qc = cfg.get("quantization_config") or {}
    if qc.get("quant_method") == "fp8":
        return "fp8"
    return {"float16": "fp16", "bfloat16": "bf16", "float32": "bf16"}.get(str(cfg.get("torch_dtype")), "bf16")


def from_hf_config(path: Path) -> ModelArch:
    """Map a Hugging Face config.json (Llama, Mistral/Mixtral, Qwen2/3(-MoE), DeepSeek-V2/V3, gpt-oss) to a card."""
    cfg = read_json(path)
    need = ["num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"]
    missing = [k for k in need if k not in cfg]
    if missing:
        raise FleetsimError(f"{path}: config.json lacks {', '.join(missing)}")
    heads = cfg["num_attention_heads"]
    card: dict[str, Any] = {
        "name": cfg.get("_name_or_path") or path.parent.name or path.stem,
        "num_layers": cfg["num_hidden_layers"],
        "hidden_size": cfg["hidden_size"],
        "num_heads": heads,
        "num_kv_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // heads,
        "intermediate_size": cfg.get("intermediate_size") or 4 * cfg["hidden_size"],
        "vocab_size": cfg["vocab_size"],
        "max_context": cfg.get("max_position_embeddings", 4096),
        "weight_dtype": _hf_dtype(cfg),
        "tie_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "source": str(path),
    }
    card["attention"] = "mha" if card["num_kv_heads"] == heads else "gqa"
    experts = cfg.get("num_local_experts") or cfg.get("n_routed_experts") or cfg.get("num_experts")
    if experts:
        card["moe"] = {
            "num_experts": experts,
            "top_k": cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or 2,
            "expert_intermediate_size": cfg.get("moe_intermediate_size") or card["intermediate_size"],
            "shared_experts": cfg.get("n_shared_experts") or 0,
            "first_dense_layers": cfg.get("first_k_dense_replace") or 0,
        }
    if "kv_lora_rank" in cfg:
        card["attention"] = "mla"
        card["num_kv_heads"] = heads
        card["mla"] = {k: cfg.get(k) or 0 for k in
                       ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")}
        card["head_dim"] = card["mla"]["v_head_dim"]
    layer_types = cfg.get("layer_types")
    if cfg.get("sliding_window") and layer_types:
        card["sliding_window"] = cfg["sliding_window"]
        card["sliding_window_layers"] = sum(1 for t in layer_types if t == "sliding_attention")
    if (cfg.get("quantization_config") or {}).get("quant_method") == "mxfp4":
        card["expert_weight_dtype"] = "mxfp4"
    return from_card(card, str(path))
