"""A transformer's architecture and the figures derived from it: parameters, weight bytes, KV bytes per token."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.model.dtypes import dtype_bytes

EMBEDDING_BYTES = 2.0  # embeddings and LM head: 16-bit in every checkpoint, quantized or not


@dataclass(frozen=True, slots=True)
class MoESpec:
    num_experts: int
    top_k: int
    expert_intermediate_size: int
    shared_experts: int = 0
    first_dense_layers: int = 0


@dataclass(frozen=True, slots=True)
class MLASpec:
    """Multi-head latent attention (DeepSeek-V2/V3): the KV cache stores one compressed latent per token."""

    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True, slots=True)
class ModelArch:
    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    attention: str = "gqa"  # mha | gqa | mla
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    expert_weight_dtype: str | None = None
    sliding_window: int | None = None
    sliding_window_layers: int = 0
    tie_embeddings: bool = False
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    display_name: str = ""
    source: str = ""
    published_params_b: float | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)

    # ---- layer structure -------------------------------------------------------------------------------------
    @property
    def num_moe_layers(self) -> int:
        return 0 if self.moe is None else self.num_layers - self.moe.first_dense_layers

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def q_dim(self) -> int:
        if self.mla:
            return self.num_heads * (self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim)
        return self.num_heads * self.head_dim

    @property
    def attn_out_dim(self) -> int:
        return self.num_heads * (self.mla.v_head_dim if self.mla else self.head_dim)

    # ---- parameters ------------------------------------------------------------------------------------------
    @property
    def attention_params_per_layer(self) -> int:
        h = self.hidden_size
        if self.mla:
            m = self.mla
            q = h * m.q_lora_rank + m.q_lora_rank * self.q_dim if m.q_lora_rank else h * self.q_dim
            kv = h * (m.kv_lora_rank + m.qk_rope_head_dim)
            kv += m.kv_lora_rank * self.num_heads * (m.qk_nope_head_dim + m.v_head_dim)
            return q + kv + self.attn_out_dim * h
        kv = 2 * h * self.num_kv_heads * self.head_dim
        return h * self.q_dim + kv + self.attn_out_dim * h

    @property
    def dense_mlp_params(self) -> int:
        return 3 * self.hidden_size * self.intermediate_size  # gated (SwiGLU): gate, up, down

    @property
    def expert_params(self) -> int:
        assert self.moe is not None
        return 3 * self.hidden_size * self.moe.expert_intermediate_size

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    @property
    def routed_expert_params_total(self) -> int:
        return 0 if self.moe is None else self.num_moe_layers * self.moe.num_experts * self.expert_params

    @property
    def params_total(self) -> int:
        p = self.embedding_params + self.num_layers * (self.attention_params_per_layer + 2 * self.hidden_size)
        p += self.num_dense_layers * self.dense_mlp_params
        if self.moe:
            per_layer = (self.moe.num_experts + self.moe.shared_experts) * self.expert_params
            per_layer += self.hidden_size * self.moe.num_experts  # router
            p += self.num_moe_layers * per_layer
        return p

    @property
    def params_active(self) -> int:
        """Parameters touched by one token (MoE: top-k routed plus shared experts)."""
        if self.moe is None:
            return self.params_total
        unused = self.num_moe_layers * (self.moe.num_experts - self.moe.top_k) * self.expert_params
        return self.params_total - unused

    @property
    def weight_bytes(self) -> float:
        """Bytes of all weights. Quantized checkpoints quantize the linear layers only: the embeddings and the LM
        head stay in 16 bits (as every FP8, GPTQ/AWQ and MXFP4 checkpoint we know leaves them)."""
        wb = dtype_bytes(self.weight_dtype, "weight_dtype")
        embed = self.embedding_params
        routed = self.routed_expert_params_total if (self.expert_weight_dtype and self.moe) else 0
        total = embed * EMBEDDING_BYTES + (self.params_total - embed - routed) * wb
        if routed:
            total += routed * dtype_bytes(self.expert_weight_dtype, "expert_weight_dtype")
        return total

    # ---- KV cache --------------------------------------------------------------------------------------------
    @property
    def kv_bytes_per_token_per_layer(self) -> float:
        kvb = dtype_bytes(self.kv_dtype, "kv_dtype")
        if self.mla:
            return (self.mla.kv_lora_rank + self.mla.qk_rope_head_dim) * kvb
        return 2 * self.num_kv_heads * self.head_dim * kvb

    @property
    def full_attention_layers(self) -> int:
        return self.num_layers - self.sliding_window_layers

    @property
    def kv_bytes_per_token(self) -> float:
        """KV bytes per cached token over the full-attention layers (sliding-window layers cap at the window)."""
        return self.full_attention_layers * self.kv_bytes_per_token_per_layer

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "params_total_b": round(self.params_total / 1e9, 2),
            "params_active_b": round(self.params_active / 1e9, 2),
            "weight_gb": round(self.weight_bytes / 1e9, 2),
            "kv_bytes_per_token": int(self.kv_bytes_per_token),
            "kv_gb_per_max_context_request": round(self.kv_bytes_per_token * self.max_context / 1e9, 2),
        }
        if self.published_params_b:
            out["published_params_b"] = self.published_params_b
        return out
