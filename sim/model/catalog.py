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
from sim.model.precision import check_kv_dtype, check_weight_dtype, from_quantization_config

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


# A card naming a `base` card inherits its architecture and replaces only what it sets: the catalog's quantized
# checkpoints are their BF16 model with other storage formats, a name and a source.
_OWN = ("name", "display_name", "aliases", "source", "base")


def _with_base(card: dict[str, Any], origin: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    base_name = card.get("base")
    if base_name is None:
        return card
    if not isinstance(base_name, str):
        raise FleetsimError(f"{origin}: base: expected a model card name, got {base_name!r}")
    canonical = resolve_name(base_name, _catalog(), "model")
    if canonical in seen:
        raise FleetsimError(f"{origin}: base cards form a loop through {canonical}")
    base = _with_base(_catalog()[canonical], canonical, (*seen, canonical))
    merged = {k: v for k, v in base.items() if k not in _OWN}
    merged.update({k: v for k, v in card.items() if k != "base"})
    return merged


def from_card(card: dict[str, Any], origin: str) -> ModelArch:
    card = _with_base(card, origin)
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
    check_weight_dtype(arch.weight_dtype, f"{origin}: weight_dtype")
    if arch.expert_weight_dtype is not None:
        check_weight_dtype(arch.expert_weight_dtype, f"{origin}: expert_weight_dtype")
    check_kv_dtype(arch.kv_dtype, f"{origin}: kv_dtype")
    return arch


def _hf_dtype(cfg: dict[str, Any]) -> str:
    """The checkpoint's unquantized format (float32 checkpoints are served in BF16)."""
    dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    return {"float16": "fp16", "bfloat16": "bf16", "float32": "bf16"}.get(str(dtype), "bf16")


_HF_SIZES = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "num_key_value_heads",
             "head_dim", "intermediate_size", "max_position_embeddings", "num_local_experts", "n_routed_experts",
             "num_experts", "num_experts_per_tok", "experts_per_token", "moe_intermediate_size", "sliding_window")


def _check_hf_config(cfg: dict[str, Any], path: Path) -> None:
    """A config's sizes are positive integers and agree with each other, or one line names the field."""
    for key in _HF_SIZES:
        value = cfg.get(key)
        if value is None and key not in ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10**9:
            raise FleetsimError(f"{path}: {key}: expected a positive integer, got {value!r}")
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    if kv > heads or heads % kv:
        raise FleetsimError(f"{path}: num_key_value_heads ({kv}) must divide num_attention_heads ({heads})")
    if cfg.get("head_dim") is None and cfg["hidden_size"] % heads:
        raise FleetsimError(f"{path}: hidden_size ({cfg['hidden_size']}) is not a multiple of num_attention_heads "
                            f"({heads}); give head_dim")
    experts = cfg.get("num_local_experts") or cfg.get("n_routed_experts") or cfg.get("num_experts")
    top_k = cfg.get("num_experts_per_tok") or cfg.get("experts_per_token")
    if experts and top_k and top_k > experts:
        raise FleetsimError(f"{path}: num_experts_per_tok ({top_k}) exceeds the number of experts ({experts})")
    types = cfg.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != cfg["num_hidden_layers"] or not all(
                t in ("sliding_attention", "full_attention") for t in types):
            raise FleetsimError(f"{path}: layer_types: expected one of sliding_attention / full_attention per layer "
                                f"({cfg['num_hidden_layers']} layers)")
        if cfg.get("sliding_window") and all(t == "sliding_attention" for t in types):
            raise FleetsimError(f"{path}: layer_types: every layer is sliding; fleetsim models at least one "
                                f"full-attention layer")


def from_hf_config(path: Path) -> ModelArch:
    """Map a Hugging Face config.json (Llama, Mistral/Mixtral, Qwen2/3(-MoE), DeepSeek-V2/V3, gpt-oss) to a card."""
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise FleetsimError(f"{path}: expected a JSON object (a Hugging Face config.json), got {type(cfg).__name__}")
    need = ["num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"]
    missing = [k for k in need if k not in cfg]
    if missing:
        raise FleetsimError(f"{path}: config.json lacks {', '.join(missing)}")
    _check_hf_config(cfg, path)
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
    if "quantization_config" in cfg:
        card.update(from_quantization_config(cfg["quantization_config"], str(path)))
    return from_card(card, str(path))
