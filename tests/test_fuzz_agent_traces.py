"""Fuzzing every agent-trace format (hypothesis): a small valid trace with one field replaced by a hostile value
replays to a whole result, or stops with one line naming the file and the field; never a traceback, never files
left behind, within a memory bound. Formats: WEKA session JSON, WEKA per-request CSV, TensorRT-LLM scaffolding
JSON, fleetsim's own JSONL (sim/agents/traces.py)."""

import copy
import json
import math
from pathlib import Path

from fuzzing import assert_result_or_one_line, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VALUES = [math.nan, math.inf, -math.inf, -1, 0, 1e30, 10**12, 10**19, "x", "", None, {"a": 1}, True, 1.5, -0.0,
          [1], [], [math.inf], [math.nan], [-1], [True], ["x"], [10**19]]  # lists: durations, hash ids, branches
TEXTS = ["nan", "inf", "-inf", "-1", "0", "1e30", "1e12", "", "abc", "1.5", "9" * 30]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

WEKA = {"block_size": 64, "requests": [
    {"t": 0.0, "in": 900, "out": 40, "think_time": 0.0, "hash_ids": list(range(14))},
    {"t": 3.0, "in": 1100, "out": 60, "think_time": 1.5, "hash_ids": list(range(17))},
    {"t": 7.5, "in": 1300, "out": 30, "think_time": 2.0, "hash_ids": list(range(20))}]}
WEKA_KEYS = ["t", "in", "out", "think_time", "hash_ids"]

CSV_HEAD = "trace_id,agent,idx,t_s,in_tokens,out_tokens,think_time_s,api_time_s"
CSV_ROWS = ["s1,main,0,0.0,900,40,0.0,1.2", "s1,main,1,6.0,1100,60,4.0,1.0", "s1,sub1,0,0.0,500,20,0.0,0.8",
            "s1,sub1,1,1.5,700,25,0.5,0.7", "s2,main,0,0.0,400,10,0.0,0.5"]

TRT = {"events": [
    {"event_type": "message", "role": "user", "content": "fix the bug"},
    {"event_type": "message", "role": "assistant", "prompt_tokens": 1200, "completion_tokens": 80},
    {"event_type": "tool_call", "duration_ms": 350, "branch_path": [0]},
    {"event_type": "tool_call", "duration_ms": 120, "branch_path": [1]},
    {"event_type": "message", "role": "assistant", "prompt_tokens": 1500, "completion_tokens": 60}]}
TRT_KEYS = ["event_type", "role", "prompt_tokens", "completion_tokens", "duration_ms", "branch_path"]

JSONL = [{"job": "j1", "type": "llm", "prompt_tokens": 800, "output_tokens": 50},
         {"job": "j1", "type": "tool", "durations_s": [1.5, 0.2]},
         {"job": "j1", "type": "llm", "prompt_tokens": 1000, "output_tokens": 40, "context": 0},
         {"job": "j2", "type": "llm", "prompt_tokens": 300, "output_tokens": 20, "context": 1}]
JSONL_KEYS = ["job", "type", "prompt_tokens", "output_tokens", "durations_s", "context"]


def _replay(path: Path) -> None:
    out = path.parent / "out"
    res = invoke(["replay", str(path), "--out", str(out), "--json"])
    assert_result_or_one_line(res, out, path.read_text()[:400], must_name=str(path), count="num_jobs")


def _replay_edited(template: dict, records: str, index: int, key: str, value: object, path: Path) -> None:
    """Replay a copy of a JSON trace with field `key` of record `index` of its list `records` set to `value`."""
    doc = copy.deepcopy(template)
    doc[records][index][key] = value
    path.write_text(json.dumps(doc))
    _replay(path)


@SETTINGS
@given(row=st.integers(0, 2), key=st.sampled_from(WEKA_KEYS), value=st.sampled_from(VALUES))
def test_weka_sessions_with_a_hostile_field(row, key, value, tmp_path_factory):
    _replay_edited(WEKA, "requests", row, key, value, tmp_path_factory.mktemp("w") / "session.json")


@SETTINGS
@given(row=st.integers(0, len(CSV_ROWS) - 1), col=st.integers(0, 7), value=st.sampled_from(TEXTS))
def test_weka_request_csv_with_a_hostile_field(row, col, value, tmp_path_factory):
    rows = [r.split(",") for r in CSV_ROWS]
    rows[row][col] = value
    path = tmp_path_factory.mktemp("c") / "requests.csv"
    path.write_text("\n".join([CSV_HEAD, *(",".join(r) for r in rows)]) + "\n")
    _replay(path)


@SETTINGS
@given(event=st.integers(1, 4), key=st.sampled_from(TRT_KEYS), value=st.sampled_from(VALUES))
def test_trtllm_traces_with_a_hostile_field(event, key, value, tmp_path_factory):
    _replay_edited(TRT, "events", event, key, value, tmp_path_factory.mktemp("t") / "run.trace.json")


@SETTINGS
@given(row=st.integers(0, 3), key=st.sampled_from(JSONL_KEYS), value=st.sampled_from(VALUES))
def test_agent_jsonl_with_a_hostile_field(row, key, value, tmp_path_factory):
    docs = copy.deepcopy(JSONL)
    docs[row][key] = value
    path = tmp_path_factory.mktemp("j") / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    _replay(path)
