"""Fuzzing every request-trace format (hypothesis): a small valid file with one field replaced by a hostile value
replays to a whole result, or stops with one line naming the file, row and field; with --skip-bad-rows the row is
skipped and counted instead. Never a traceback, never files left behind."""

import json
import math
from pathlib import Path

from fuzzing import assert_result_or_one_line, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).parents[1]
CSV = {name: (ROOT / "tests" / "fixtures" / name).read_text().splitlines()[:6]
       for name in ("azure_2024.csv", "burstgpt.csv", "splitwise.csv", "vidur.csv")}
TEXTS = ["nan", "inf", "-inf", "-1", "0", "1e30", "1e19", "", "abc", "1.5", "9" * 30, "2023-13-45 99:99:99", "-0"]
JSON_VALUES = [math.nan, math.inf, -1, 0, 1e30, 10**19, "x", None, [1], {"a": 1}, True, 1.5]


def _check(path: Path, skip: bool) -> None:
    out = path.parent / ("out-skip" if skip else "out")
    res = invoke(["replay", str(path), "--out", str(out), "--json"] + (["--skip-bad-rows"] if skip else []))
    assert_result_or_one_line(res, out, path.read_text()[:400], must_name=str(path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(CSV)), row=st.integers(1, 5), col=st.integers(0, 6),
       value=st.sampled_from(TEXTS), skip=st.booleans())
def test_csv_traces_with_a_hostile_field(name, row, col, value, skip, tmp_path_factory):
    lines = list(CSV[name])
    fields = lines[row].split(",")
    fields[col % len(fields)] = value
    lines[row] = ",".join(fields)
    path = tmp_path_factory.mktemp("t") / name
    path.write_text("\n".join(lines) + "\n")
    _check(path, skip)


JSONL = {"openai_log.jsonl": (ROOT / "tests" / "fixtures" / "openai_log.jsonl").read_text().splitlines()[:5],
         "mooncake.jsonl": (ROOT / "traces" / "mooncake_conv_sample.jsonl").read_text().splitlines()[:5]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(JSONL)), row=st.integers(0, 4), key=st.integers(0, 5),
       value=st.sampled_from(JSON_VALUES), skip=st.booleans())
def test_jsonl_traces_with_a_hostile_field(name, row, key, value, skip, tmp_path_factory):
    docs = [json.loads(line) for line in JSONL[name]]
    doc = docs[row]
    target = doc["usage"] if "usage" in doc and key % 2 else doc
    keys = sorted(target)
    target[keys[key % len(keys)]] = value
    path = tmp_path_factory.mktemp("j") / name
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    _check(path, skip)


BENCH = json.loads((ROOT / "tests" / "fixtures" / "vllm_bench_result.json").read_text())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["input_lens", "output_lens", "ttfts", "itls", "request_rate", "burstiness",
                            "start_times"]), index=st.integers(0, 3), value=st.sampled_from(JSON_VALUES))
def test_vllm_bench_results_with_a_hostile_field(key, index, value, tmp_path_factory):
    doc = json.loads(json.dumps(BENCH))
    if isinstance(doc.get(key), list):
        doc[key][index] = value
    else:
        doc[key] = value
    path = tmp_path_factory.mktemp("b") / "bench.json"
    path.write_text(json.dumps(doc))
    _check(path, False)
