"""Agent traces replayed as jobs.

WEKA coding-agent sessions (callanjfox/kv-cache-tester, Apache-2.0; copied in shared/data/traces/weka_claude_code):
one JSON file per session, `requests[]` with `t` (s since the session started), `in` and `out` tokens, `hash_ids`
(one id per `block_size` tokens of the prompt, local to the session) and `think_time` (the gap before the request:
tool execution plus client time). Each session becomes one job: its requests in order, each preceded by a pause of
its think time. Sub-agent requests are replayed in the same sequence (they are not overlapped with the parent's).
"""

from __future__ import annotations

import json
from pathlib import Path

from sim.agents.program import AgentProgram, LLMCall, ToolCall
from sim.errors import FleetsimError


def read_weka_session(path: Path, pid: int, max_tokens: int | None = None) -> tuple[AgentProgram, int]:
    """One session as a job, and how many of its requests were clipped to `max_tokens` (prompt + output)."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FleetsimError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise FleetsimError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
        raise FleetsimError(f"{path}: expected a WEKA session (an object with a 'requests' list)")
    block = doc.get("block_size", 64)
    if not isinstance(block, int) or block < 1:
        raise FleetsimError(f"{path}: field 'block_size' must be a positive integer, got {block!r}")
    steps: list[LLMCall | ToolCall] = []
    clipped = 0
    for i, req in enumerate(sorted(doc["requests"], key=lambda r: r.get("t", 0.0) if isinstance(r, dict) else 0)):
        where = f"{path}: requests[{i}]"
        if not isinstance(req, dict):
            raise FleetsimError(f"{where}: expected an object")
        for field, kind in (("in", int), ("out", int)):
            value = req.get(field)
            if not isinstance(value, kind) or isinstance(value, bool) or value < 1:
                raise FleetsimError(f"{where}: field '{field}' must be a positive integer, got {value!r}")
        think = req.get("think_time", 0.0) or 0.0
        if not isinstance(think, (int, float)) or think < 0:
            raise FleetsimError(f"{where}: field 'think_time' must be a number of seconds >= 0, got {think!r}")
        hashes = req.get("hash_ids") or []
        if not isinstance(hashes, list) or not all(isinstance(h, int) and h >= 0 for h in hashes):
            raise FleetsimError(f"{where}: field 'hash_ids' must be a list of non-negative integers")
        prompt, out = req["in"], req["out"]
        if max_tokens is not None and prompt + out > max_tokens:
            clipped += 1
            out = min(out, max(1, max_tokens // 8))
            prompt = max_tokens - out
        if think > 0 and steps:
            steps.append(ToolCall((float(think),)))
        keys = tuple(hashes[:prompt // block])
        steps.append(LLMCall(0, out, prompt_tokens=prompt, keys=keys, unit_tokens=block))
    if not steps:
        raise FleetsimError(f"{path}: the session has no requests")
    return AgentProgram(pid, tuple(steps)), clipped


def read_agent_trace(path: str | Path, max_tokens: int | None = None) -> tuple[list[AgentProgram], list[str], int]:
    """Jobs from a WEKA session file or a folder of them: (jobs, session names, requests clipped)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise FleetsimError(f"{path}: no session files (*.json) in the folder")
    elif path.is_file():
        files = [path]
    else:
        raise FleetsimError(f"agent trace '{path}': no such file or folder")
    programs, names, clipped = [], [], 0
    for pid, f in enumerate(files):
        prog, c = read_weka_session(f, pid, max_tokens)
        programs.append(prog)
        names.append(f.stem)
        clipped += c
    return programs, names, clipped
