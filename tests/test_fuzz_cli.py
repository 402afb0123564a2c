"""Fuzzing the command line (hypothesis): whatever value a flag gets, `fleetsim run` ends with exit 0 and a whole
result, or exit 2, one line on stderr and no files; never a traceback. Values are drawn where bugs live: NaN,
infinities, zero, negatives, huge and tiny magnitudes, wrong types."""

import numpy as np
import pytest
from fuzzing import assert_result_or_one_line, invoke, memory_bound
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

NUMBERS = st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e30", "1e-310", "3", "0.5", "abc", "", "1e9",
                           "9223372036854775808", "-0"])
FLOAT_FLAGS = ["--rate", "--cv", "--duration", "--start", "--rate-scale", "--sample", "--step-overhead",
               "--gpu-memory-utilization", "--slo-ttft", "--slo-tpot", "--kv-offload-gb"]
INT_FLAGS = ["--num-requests", "--num-gpus", "--tp", "--pp", "--replicas", "--max-num-seqs", "--max-batched-tokens",
             "--block-size", "--seed", "--max-tokens", "--concurrency"]
LENGTH_FLAGS = ["--input-len", "--output-len"]
LENGTHS = st.sampled_from(["fixed:0", "fixed:nan", "fixed:1e30", "uniform:5:1", "uniform:A:B", "lognormal:100:99",
                           "lognormal:nan:1", "fixed:64", "empirical", "bogus", "fixed:-3"])


def _parses(value: str, kind: type) -> bool:
    try:
        kind(value)
    except ValueError:
        return False
    return True


def _check(args: list[str], tmp_path) -> None:
    out = tmp_path / "o"
    assert_result_or_one_line(invoke(["run", *args, "--out", str(out), "--json"]), out, args)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(FLOAT_FLAGS + INT_FLAGS), value=NUMBERS, generated=st.booleans())
def test_any_value_of_a_numeric_flag_is_a_result_or_one_line(flag, value, generated, tmp_path_factory):
    # Values of the wrong type are typer's usage errors: one line from the program (test_bad_input checks it), a
    # framed panel under this in-process runner.
    assume(_parses(value, int if flag in INT_FLAGS else float))
    args = [flag, value, "--num-requests" if flag != "--num-requests" else "--seed", "30" if flag != "--num-requests"
            else "0"]
    if generated:
        args += ["--arrival", "poisson"]
    _check(args, tmp_path_factory.mktemp("f"))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(LENGTH_FLAGS), value=LENGTHS)
def test_any_length_spec_is_a_result_or_one_line(flag, value, tmp_path_factory):
    _check([flag, value, "--arrival", "poisson", "--num-requests", "20"], tmp_path_factory.mktemp("l"))


def test_the_memory_bound_of_the_fuzz_suites_holds():
    # Without it a case that allocates without limit would swap the CI machine instead of failing its test.
    with memory_bound(headroom=256 * 2**20), pytest.raises(MemoryError):
        np.ones(2**30 // 8 * 3)  # 3 GiB, well under the machine's memory, over the bound
    np.ones(2**27 // 8)  # the bound is lifted after the block
