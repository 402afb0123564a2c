"""Fuzzing scenario files and model configs (hypothesis): any value in any field gives exit 0 with a whole result,
or exit 2 with one line naming the file and field; never a traceback, never files left behind."""

import dataclasses
import json
import math
from pathlib import Path

from fuzzing import assert_result_or_one_line, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.agents.spec import AgentSpec
from sim.scenario import SLO, Scenario
from sim.serving.engine_config import EngineConfig
from sim.workload.spec import WorkloadSpec

SECTIONS = {"": Scenario, "engine": EngineConfig, "workload": WorkloadSpec, "slo": SLO, "agents": AgentSpec}
SKIP = {"disagg", "engine", "workload", "slo", "agents", "trace", "agent_trace"}  # tables, and files of their own
FIELDS = [(section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
          if f.name not in SKIP]
VALUES = [math.nan, math.inf, -math.inf, -1, 0, 1, 0.5, 10**19, 1e300, -1e-300, "", "x", "fixed:0", True, [1], {"a": 1}]


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return str(v)


def scenario_text(section: str, name: str, value: object) -> str:
    tables = {"workload": {"num_requests": "20", "duration_s": "inf"}}
    if section == "agents":
        tables["agents"] = {"programs": "2", "turns": "2"}
    if section:
        tables.setdefault(section, {})[name] = toml_value(value)
        top = ""
    else:
        top = f"{name} = {toml_value(value)}\n"
    return top + "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()) for s, fields in
                         tables.items())


def check_file(path: Path, args: list[str]) -> None:
    out = path.parent / "out"
    res = invoke(["run", *args, "--out", str(out), "--json"])
    assert_result_or_one_line(res, out, path.read_text()[:300])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=st.sampled_from(VALUES))
def test_any_value_in_any_scenario_field(field, value, tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "s.toml"
    path.write_text(scenario_text(*field, value))
    check_file(path, [str(path)])


HF = json.loads((Path(__file__).parent / "fixtures" / "qwen2-7b-instruct.config.json").read_text())
HF_FIELDS = ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
             "intermediate_size", "vocab_size", "max_position_embeddings", "sliding_window", "num_experts",
             "num_experts_per_tok", "moe_intermediate_size", "torch_dtype", "tie_word_embeddings", "layer_types",
             "quantization_config", "rope_theta"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(HF_FIELDS), value=st.sampled_from(VALUES + [None, 3, 7, 100000]))
def test_any_value_in_any_model_config_field(field, value, tmp_path_factory):
    folder = tmp_path_factory.mktemp("m")
    config = {**HF, field: value}
    if field.startswith("num_experts") or field == "moe_intermediate_size":
        config = {"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 512, **config}
    path = folder / "config.json"
    path.write_text(json.dumps(config, allow_nan=True))
    check_file(path, ["--model", str(path), "--num-requests", "20"])
