import json

import pytest

from sim.errors import FleetsimError
from sim.hardware import gpu_names, load_gpu
from sim.model import load_model, model_names

EXPECTED_MODELS = {"llama-2-7b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mixtral-8x7b",
                   "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3", "gpt-oss-120b"}


def test_catalog_has_the_models_and_gpus():
    assert EXPECTED_MODELS <= set(model_names())
    assert {"a100-80gb-sxm", "h100-sxm", "h200", "b200", "mi300x"} <= set(gpu_names())


@pytest.mark.parametrize("name", sorted(EXPECTED_MODELS))
def test_derived_parameter_count_matches_the_published_one(name):
    m = load_model(name)
    assert m.published_params_b, "every card cites its published size"
    assert m.params_total / 1e9 == pytest.approx(m.published_params_b, rel=0.01)
    assert m.source


def test_kv_bytes_per_token_known_values():
    # Llama-3.1-8B: 2 (K,V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB per token.
    assert load_model("llama-3.1-8b").kv_bytes_per_token == 131072
    # DeepSeek-V3 MLA caches one 512 + 64 latent per layer: 61 x 576 x 2 bytes.
    assert load_model("deepseek-v3").kv_bytes_per_token == 61 * 576 * 2
    # gpt-oss-120b: MXFP4 experts put the checkpoint near 65 GB (fits one 80 GB GPU).
    assert 60e9 < load_model("gpt-oss-120b").weight_bytes < 70e9


def test_aliases_resolve_case_insensitively():
    assert load_model("meta-llama/Llama-3.1-8B").name == "llama-3.1-8b"
    assert load_gpu("H100").name == "h100-sxm"


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(FleetsimError, match="valid names: .*llama-3.1-8b"):
        load_model("llama-9")
    with pytest.raises(FleetsimError, match="valid names: .*h100-sxm"):
        load_gpu("h900")


def test_hugging_face_config_json_loads(tmp_path):
    cfg = {"_name_or_path": "toy/moe", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 8,
           "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 2048,
           "num_local_experts": 4, "num_experts_per_tok": 2, "torch_dtype": "bfloat16"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = load_model(str(path))
    assert (m.num_layers, m.num_kv_heads, m.head_dim, m.moe.num_experts, m.moe.top_k) == (4, 2, 32, 4, 2)
    # embeddings 2 x 1000 x 256; attention q,o 256x256 each plus k,v 256x64 each; 4 experts x 3 x 256 x 512.
    per_layer = 2 * 256 * 256 + 2 * 256 * 64 + 4 * 3 * 256 * 512 + 256 * 4 + 2 * 256
    assert m.params_total == 2 * 1000 * 256 + 4 * per_layer


def test_bad_config_json_is_one_clear_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(FleetsimError, match="config.json: invalid JSON at line 1"):
        load_model(str(path))
    path.write_text(json.dumps({"hidden_size": 10}))
    with pytest.raises(FleetsimError, match="lacks num_hidden_layers"):
        load_model(str(path))
