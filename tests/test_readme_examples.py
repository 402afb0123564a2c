"""Every `fleetsim` example in the README runs, at small sizes: each command is taken from the README's bash blocks
as written, its request, job and turn counts shrunk, the files it names made from fixtures (the README's own
scenario and card files, a trace, a gateway log, a vLLM result), then run as a program in a fresh folder."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FIXTURES = Path(__file__).parent / "fixtures"
# A search example written with "..." stands for the one above it: a small search of its kind.
ELLIPSIS = "--model llama-3.1-8b --gpu h100 --num-gpus 2"


def commands() -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        block = re.sub(r"\\\n\s*", " ", block)
        for line in block.splitlines():
            cmd = re.split(r"\s+#", line, maxsplit=1)[0].strip()
            if cmd.startswith("fleetsim"):
                out.append(cmd)
    return out


def small(cmd: str) -> list[str]:
    args = shlex.split(cmd.replace("...", ELLIPSIS))[1:]
    sub = args[0] if args else ""

    def set_value(flag: str, value: str) -> None:
        if flag in args:
            args[args.index(flag) + 1] = value

    set_value("--num-requests", "12")
    set_value("--jobs", "3")
    set_value("--turns", "2")
    set_value("--agents", "2")
    agents = any(f in args for f in ("--agents", "--agent-rate", "--jobs"))
    if agents and "--jobs" not in args:
        args += ["--jobs", "3"]
    if agents and "--turns" not in args and "replay" != sub:
        args += ["--turns", "2"]
    if sub in ("run", "search", "replay") and not agents and "--num-requests" not in args \
            and "sessions" not in cmd:
        args += ["--num-requests", "12"]
    if sub == "replay" and "sessions" in cmd:
        args += ["--agents", "2"]
    if sub == "search":
        for flag, value in (("--max-num-seqs", "128"), ("--max-batched-tokens", "2048")):
            if flag not in args:
                args += [flag, value]
    return args


def toml_block(marker: str) -> str:
    return next(b for b in re.findall(r"```toml\n(.*?)```", README, re.S) if marker in b)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    (d / "scenario.toml").write_text(toml_block("[engine]"))
    (d / "cards").mkdir()
    (d / "cards" / "rtx-pro-6000.toml").write_text(toml_block('name = "rtx-pro-6000"'))
    # Two hours of an Azure log (the shipped hour, then again an hour later), as the replay examples assume.
    head, *rows = (ROOT / "traces" / "azure_code_2023.csv").read_text().splitlines()
    later = []
    for row in rows[::10]:
        stamp, rest = row.split(",", 1)
        day, clock = stamp.split(" ")
        later.append(f"{day} {int(clock[:2]) + 1:02d}{clock[2:]},{rest}")
    (d / "requests.csv").write_text("\n".join([head, *rows[::10], *later]) + "\n")
    shutil.copy(FIXTURES / "openai_log.jsonl", d / "gateway.jsonl")
    shutil.copy(FIXTURES / "vllm_bench_result.json", d / "bench.json")
    return d


CASES = commands()


def test_the_readme_has_examples():
    assert len(CASES) >= 40 and any(c.startswith("fleetsim search") for c in CASES)


@pytest.mark.parametrize("cmd", CASES, ids=[f"{i:02d} {c[:60]}" for i, c in enumerate(CASES)])
def test_readme_example_runs(cmd, folder, shared_data):
    if "--executor ray" in cmd:
        pytest.importorskip("ray")
    args = [a.replace("../shared/data", str(shared_data)) for a in small(cmd)]
    p = subprocess.run([sys.executable, "-m", "sim.cli", *args], cwd=folder, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, f"{' '.join(args)}\n{p.stderr[-2000:]}"
