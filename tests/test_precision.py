"""Precision: weights and KV cache in FP8, INT4 and MXFP4 cost and hold what their bytes and kernels say."""

import json

import pytest
from typer.testing import CliRunner

import sim
from sim.cli import app
from sim.cost import IterationCost
from sim.hardware import Cluster, load_gpu, load_node
from sim.model import load_model
from sim.model.precision import with_precision
from sim.parallel import Plan
from sim.parallel.memory import weight_bytes_per_gpu


def _cost(model, gpu: str = "h100", tp: int = 1) -> IterationCost:
    return IterationCost(model, Cluster(load_gpu(gpu), load_node("dgx-h100"), None, tp), Plan(tp=tp))


def test_fp8_weights_halve_the_decoder_and_keep_the_embeddings_in_16_bits():
    bf16, fp8 = load_model("llama-3.1-70b"), load_model("llama-3.1-70b-fp8")
    assert fp8.params_total == bf16.params_total and fp8.weight_dtype == "fp8"
    embed = bf16.embedding_params * 2.0
    assert fp8.weight_bytes == pytest.approx(embed + (bf16.weight_bytes - embed) / 2, rel=1e-12)
    assert weight_bytes_per_gpu(fp8, Plan(tp=2)) < 0.55 * weight_bytes_per_gpu(bf16, Plan(tp=2))


def test_fp8_and_weight_only_formats_cost_less_where_the_kernels_say_so():
    # H100 TP2, Llama-3.1-70B. Decode of 32 sequences is weight-read bound: every smaller format is faster. A
    # 4,096-token prefill is compute bound: FP8 (W8A8) runs at twice BF16's peak, but INT4 and MXFP4 (weight-only)
    # dequantize to BF16 and gain almost nothing.
    base = load_model("llama-3.1-70b")
    costs = {d: _cost(with_precision(base, d), tp=2) for d in ("bf16", "fp8", "int4", "mxfp4")}
    decode = {d: c.decode_time(32, 32 * 2000) for d, c in costs.items()}
    prefill = {d: c.step_time([(4096, 0)], 0, 0) for d, c in costs.items()}
    assert decode["int4"] < decode["fp8"] < decode["bf16"]
    assert decode["mxfp4"] < decode["fp8"]
    assert prefill["fp8"] < 0.8 * prefill["bf16"]
    assert prefill["int4"] > 0.9 * prefill["bf16"] and prefill["int4"] > prefill["fp8"]
    # FP8 weights use the measured FP8 table; INT4 (not measured) is the measured BF16 kernel less the weight bytes
    # it does not read: at one token a quarter of BF16's time, at 4,096 tokens nearly all of it.
    assert costs["fp8"]._formats["fp8"][2] is not None and costs["int4"]._formats["int4"][2] is None
    bf16_1 = costs["bf16"]._gemm(1, 8192, 8192, "bf16")
    assert costs["int4"]._gemm(1, 8192, 8192, "int4") == pytest.approx(0.25 * bf16_1, rel=1e-9)
    big = costs["bf16"]._gemm(4096, 8192, 8192, "bf16")
    assert big - 0.75 * bf16_1 == pytest.approx(costs["int4"]._gemm(4096, 8192, 8192, "int4"), rel=1e-9)


def test_fp8_kv_doubles_the_tokens_held_and_cuts_long_context_decode():
    runs = {}
    for kv in ("bf16", "fp8"):
        runs[kv] = sim.run(model="llama-3.1-8b", gpu="h100", num_gpus=1, kv_dtype=kv,
                           workload={"num_requests": 5})
    blocks = {kv: r.info["kv_blocks_per_engine"] for kv, r in runs.items()}
    assert blocks["fp8"] == pytest.approx(2 * blocks["bf16"], abs=2)
    model = load_model("llama-3.1-8b")
    long = 64 * 32768
    assert _cost(with_precision(model, kv_dtype="fp8")).decode_time(64, long) < 0.8 * _cost(model).decode_time(64, long)


def test_gpt_oss_keeps_its_experts_in_mxfp4():
    m = load_model("gpt-oss-120b")
    assert m.expert_weight_dtype == "mxfp4" and m.weight_dtype == "bf16"
    # Published: 116.8B parameters in a checkpoint of about 65 GB (MXFP4 experts, BF16 rest).
    assert 60e9 < m.weight_bytes < 68e9
    all_bf16 = with_precision(m, "bf16")
    assert all_bf16.weight_bytes > 3 * m.weight_bytes


def _config(tmp_path, qc, **extra) -> str:
    cfg = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 131072,
           "torch_dtype": "bfloat16", **extra}
    if qc is not None:
        cfg["quantization_config"] = qc
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.mark.parametrize("qc, weight, kv", [
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "fp8", "bf16"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 8, "type": "float"}, "input_activations": {"num_bits": 8, "type": "float"}}},
      "kv_cache_scheme": {"num_bits": 8, "type": "float"}}, "fp8", "fp8"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 4, "type": "int", "group_size": 128}}}}, "int4", "bf16"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "int4", "bf16"),
    ({"quant_method": "awq", "bits": 4}, "int4", "bf16"),
    ({"quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}, "fp8", "fp8"),
    (None, "bf16", "bf16"),
])
def test_hugging_face_quantization_configs_are_read(tmp_path, qc, weight, kv):
    m = load_model(_config(tmp_path, qc))
    assert (m.weight_dtype, m.kv_dtype) == (weight, kv)


@pytest.mark.parametrize("qc, message", [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "quant_method 'bitsandbytes' is not modelled"),
    ({"quant_method": "gptq", "bits": 3}, "gptq with 3-bit weights"),
    ({"quant_method": "compressed-tensors"}, "compressed-tensors without config_groups"),
    (["fp8"], "expected a JSON object"),
])
def test_an_unreadable_quantization_config_is_one_line_exit_2(tmp_path, qc, message):
    path = _config(tmp_path, qc)
    with pytest.raises(sim.FleetsimError, match=message):
        load_model(path)
    res = CliRunner().invoke(app, ["run", "--model", path, "--num-requests", "3"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "quantization_config" in res.output


@pytest.mark.parametrize("flag, value, field", [("--weight-dtype", "fp4", "weight_dtype"),
                                                ("--kv-dtype", "int4", "kv_dtype")])
def test_a_bad_precision_name_is_one_line_exit_2(flag, value, field):
    res = CliRunner().invoke(app, ["run", flag, value, "--num-requests", "3"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and field in res.output and value in res.output


def test_catalog_variants_inherit_their_base_and_a_card_loop_is_refused(tmp_path):
    for name, base in (("qwen3-30b-a3b-fp8", "qwen3-30b-a3b"), ("llama-3.1-8b-fp8", "llama-3.1-8b")):
        v, b = load_model(name), load_model(base)
        assert (v.num_layers, v.hidden_size, v.moe) == (b.num_layers, b.hidden_size, b.moe)
        assert v.weight_dtype == "fp8" and v.name == name
    assert load_model("Qwen/Qwen3-235B-A22B-FP8").name == "qwen3-235b-a22b-fp8"
    card = tmp_path / "mine.toml"
    card.write_text('name = "mine"\nbase = "llama-3.1-8b"\nkv_dtype = "fp8"\n')
    assert load_model(str(card)).kv_dtype == "fp8"
    card.write_text('name = "mine"\nbase = "llama-3.1-8b"\nweight_dtype = "fp6"\n')
    with pytest.raises(sim.FleetsimError, match="weight_dtype: expected one of"):
        load_model(str(card))


def test_the_run_reports_its_precision():
    res = CliRunner().invoke(app, ["run", "--model", "gpt-oss-20b", "--num-requests", "3", "--kv-dtype", "fp8"])
    assert res.exit_code == 0, res.output
    assert "gpt-oss-20b (bf16 weights, mxfp4 experts, fp8 KV)" in res.output
