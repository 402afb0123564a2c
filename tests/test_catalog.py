import json

import pytest

from sim.errors import FleetsimError
from sim.hardware import gpu_names, load_gpu
from sim.model import load_model, model_names

EXPECTED_MODELS = {"llama-2-7b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mixtral-8x7b",
                   "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3", "gpt-oss-120b"}


def test_catalog_has_the_models_and_gpus():
    assert EXPECTED_MODELS <= set(model_names())
    assert {"a100-80gb-sxm", "h100-sxm", "h200", "b200", "mi300x", "l40s", "a10"} <= set(gpu_names())


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


def test_a_gpu_card_given_by_path_runs_end_to_end(tmp_path):
    """Plan on a GPU fleetsim does not ship: a card file in the shipped form, costed with a named calibration
    family's efficiencies."""
    import json

    from typer.testing import CliRunner

    from sim.cli import app

    card = tmp_path / "rtx-pro.toml"
    card.write_text('name = "rtx-pro"\nbf16_tflops = 500.0\nfp8_tflops = 1000.0\nhbm_gb = 96.0\nhbm_tbps = 1.8\n'
                    'scale_up_gbps = 64.0\npcie_gbps = 64.0\npower_w = 600.0\nprice_per_hour_usd = 2.0\n'
                    'calibration = "h100"\n')
    node = tmp_path / "box.toml"
    node.write_text('name = "box"\ngpus_per_node = 4\nhost_memory_gb = 512.0\nlink = "pcie"\n')
    res = CliRunner().invoke(app, ["run", "--gpu", str(card), "--node", str(node), "--num-gpus", "4",
                                   "--num-requests", "50", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_finished"] == 50
    faster = card.read_text().replace("hbm_tbps = 1.8", "hbm_tbps = 3.6")
    (tmp_path / "fast.toml").write_text(faster)
    tpot = {}
    for name in ("rtx-pro", "fast"):
        r = CliRunner().invoke(app, ["run", "--gpu", str(tmp_path / f"{name}.toml"), "--num-gpus", "1",
                                     "--num-requests", "30", "--json"])
        tpot[name] = json.loads(r.stdout)["tpot_p50_s"]
    assert tpot["fast"] < tpot["rtx-pro"]  # decode is bound by memory bandwidth: the card's figures act


@pytest.mark.parametrize("edit,message", [
    (("hbm_tbps = 1.8\n", ""), "missing field(s) hbm_tbps"),
    (("hbm_tbps = 1.8", "hbm_tbps = 0"), "field 'hbm_tbps' must be a positive number, got 0"),
    (("hbm_tbps = 1.8", "hbm_tbps = -2.0"), "field 'hbm_tbps' must be a positive number, got -2.0"),
    (("hbm_tbps = 1.8", 'hbm_tbps = "fast"'), "field 'hbm_tbps' must be a positive number, got 'fast'"),
    (("hbm_tbps = 1.8", "hbm_tbps = 1.8\nwarp_size = 32"), "unknown field(s) warp_size"),
    (('calibration = "h100"', 'calibration = "ada"'), "calibration 'ada' is not a measured family"),
    (("hbm_tbps = 1.8", "hbm_tbps = "), "invalid TOML"),
])
def test_a_bad_gpu_card_is_one_line_exit_2(tmp_path, edit, message):
    from typer.testing import CliRunner

    from sim.cli import app

    text = ('name = "x"\nbf16_tflops = 500.0\nfp8_tflops = 1000.0\nhbm_gb = 96.0\nhbm_tbps = 1.8\n'
            'scale_up_gbps = 64.0\npcie_gbps = 64.0\npower_w = 600.0\nprice_per_hour_usd = 2.0\ncalibration = "h100"\n')
    card = tmp_path / "x.toml"
    card.write_text(text.replace(*edit))
    res = CliRunner().invoke(app, ["run", "--gpu", str(card), "--num-requests", "5"])
    assert res.exit_code == 2 and message in res.stderr, res.output
    assert str(card) in res.stderr and len(res.stderr.strip().splitlines()) == 1
    missing = CliRunner().invoke(app, ["run", "--gpu", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "file not found" in missing.stderr


@pytest.mark.parametrize("gpu", ["l40s", "a10"])
def test_pcie_cards_of_the_catalog_serve_a_small_model(gpu):
    import sim

    s = sim.run(model="llama-3.1-8b", gpu=gpu, node="pcie-8gpu", num_gpus=1,
                **{"workload.num_requests": 40, "workload.duration_s": None, "workload.max_tokens": 4000}).summary
    assert s["num_finished"] == 40
