"""Agent traces replayed as jobs. Formats (chosen by the file's shape):

- WEKA session JSON (below), or a folder of them;
- WEKA per-request CSV (`requests_nohash.csv[.gz]`): one row per LLM call of many sessions (trace_id, agent, idx,
  t_s, in_tokens, out_tokens, think_time_s, api_time_s); the main agent and each sub-agent extend their own
  contexts, and sub-agents run alongside each other while the main agent waits for them (see `_session_steps`);
- TensorRT-LLM scaffolding traces (JSON with `events`): assistant messages are LLM calls (prompt_tokens,
  completion_tokens), `tool_call` events pause the job (`duration_ms`; calls on different `branch_path`s between
  two LLM calls run in parallel);
- fleetsim's own JSONL, one event per line, for users' agent logs:
  `{"job": "j1", "type": "llm", "prompt_tokens": 5200, "output_tokens": 310}` and
  `{"job": "j1", "type": "tool", "durations_s": [1.5, 0.2]}` (one duration per parallel branch), in order per job.

WEKA coding-agent sessions (callanjfox/kv-cache-tester, Apache-2.0; copied in shared/data/traces/weka_claude_code):
one JSON file per session, `requests[]` with `t` (s since the session started), `in` and `out` tokens, `hash_ids`
(one id per `block_size` tokens of the prompt, local to the session) and `think_time` (the gap before the request:
tool execution plus client time). Each session becomes one job: its requests in order, each preceded by a pause of
its think time. (These 25 sessions carry no sub-agents; the CSV's do.)
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path
from typing import Any

from sim.agents.program import AgentProgram, Fork, LLMCall, ToolCall
from sim.core.checks import MAX_TOKENS, integer_what
from sim.core.json_file import read_json
from sim.errors import FleetsimError

MAX_CONTEXTS = 1 << 20  # distinct agent contexts one job may name: far above any trace; keys stay small integers


def _integer(value: Any, where: str, field: str, low: int = 1, high: int | None = MAX_TOKENS) -> int:
    """Token counts and other integer fields of a trace (not a bool, not a float), in the wording of the request
    traces' messages: "FILE:LINE: field 'x' must be a positive integer up to 10,000,000, got 1e12"."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high)):
        raise FleetsimError(f"{where}: field '{field}' must be {integer_what(low, high)}, got {value!r}")
    return value


def _seconds(value: Any, where: str, field: str, low: float | None = 0.0, unit: str = "seconds") -> float:
    """Times of a trace: a real number (not a bool), finite, >= `low` unless None."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (low is None or value >= low)):
        bound = f" >= {low:g}" if low is not None else ""
        raise FleetsimError(f"{where}: field '{field}' must be a finite number of {unit}{bound}, got {value!r}")
    return float(value)


def read_weka_session(path: Path, pid: int, max_tokens: int | None = None) -> tuple[AgentProgram, int]:
    """One session as a job, and how many of its requests were clipped to `max_tokens` (prompt + output)."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
        raise FleetsimError(f"{path}: expected a WEKA session (an object with a 'requests' list)")
    block = _integer(doc.get("block_size", 64), str(path), "block_size")
    steps: list[LLMCall | ToolCall] = []
    clipped = 0
    for i, req in enumerate(doc["requests"]):  # checked in file order, so that a message names the file's index
        where = f"{path}: requests[{i}]"
        if not isinstance(req, dict):
            raise FleetsimError(f"{where}: expected an object")
        req["t"] = _seconds(req.get("t", 0.0), where, "t", low=None)
        req["in"], req["out"] = _integer(req.get("in"), where, "in"), _integer(req.get("out"), where, "out")
        think = req.get("think_time")
        req["think_time"] = 0.0 if think is None else _seconds(think, where, "think_time")
        hashes = req.get("hash_ids") or []
        if not isinstance(hashes, list) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 0
                                                   for h in hashes):
            raise FleetsimError(f"{where}: field 'hash_ids' must be a list of non-negative integers")
        req["hash_ids"] = hashes
    for req in sorted(doc["requests"], key=lambda r: r["t"]):
        think, hashes = req["think_time"], req["hash_ids"]
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


CONTEXT_UNIT = 256  # tokens per prefix key where a trace gives no block ids (a call's prompt extends its context)
_SUBCONTEXT = 1 << 24  # key offset between the contexts of one job's agents (main, sub-agents)


class _Clipper:
    """Clips calls to the model's context and counts them."""

    def __init__(self, max_tokens: int | None) -> None:
        self.max_tokens, self.count = max_tokens, 0

    def __call__(self, prompt: int, out: int) -> tuple[int, int]:
        if self.max_tokens is not None and prompt + out > self.max_tokens:
            self.count += 1
            out = min(out, max(1, self.max_tokens // 8))
            prompt = self.max_tokens - out
        return prompt, out


def _context_call(prompt: int, out: int, context: int) -> LLMCall:
    """A call whose prompt is a prefix-extension of one context: keys count that context's units, the output's
    included (the next call's prompt contains it)."""
    first = context * _SUBCONTEXT
    return LLMCall(0, out, prompt_tokens=prompt, keys=tuple(range(first, first + (prompt + out) // CONTEXT_UNIT)),
                   unit_tokens=CONTEXT_UNIT)


def read_weka_csv(path: Path, clip: _Clipper) -> tuple[list[AgentProgram], list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    sessions: dict[str, list[tuple[float, int, str, int, int, float, float]]] = {}
    need = ("trace_id", "agent", "idx", "t_s", "in_tokens", "out_tokens", "think_time_s")
    with opener(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise FleetsimError(f"{path}: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, 2):
            where = f"{path}:{line}"
            rec = (_csv_number(row, "t_s", where), _csv_integer(row, "idx", where, 0, None), row["agent"],
                   _csv_integer(row, "in_tokens", where, 1, MAX_TOKENS),
                   _csv_integer(row, "out_tokens", where, 0, MAX_TOKENS),
                   _csv_number(row, "think_time_s", where, blank=0.0), _csv_number(row, "api_time_s", where, blank=0.0))
            if rec[4] == 0:
                # An aborted response (no stop reason): its prompt was still processed; model it as one token.
                rec = rec[:4] + (1,) + rec[5:]
            sessions.setdefault(row["trace_id"], []).append(rec)
    programs, names = [], []
    for pid, (name, rows) in enumerate(sorted(sessions.items())):
        programs.append(AgentProgram(pid, _session_steps(rows, clip)))
        names.append(name)
    return programs, names


def _session_steps(rows: list[tuple], clip: _Clipper) -> tuple:
    """One session's main agent as a chain, with its sub-agents forked off where they ran.

    A sub-agent's `t_s` counts from its own start, so where it ran is inferred: sub-agents, in the order they were
    spawned, go into the first wait of the main agent (think time before one of its calls) long enough to hold
    their traced span; sub-agents sharing a wait run in parallel (Claude Code starts the Task calls of one message
    together). The main agent then waits out what is left of that think time after the slowest sub-agent."""
    agents: dict[str, list[tuple]] = {}
    for rec in sorted(rows, key=lambda r: (r[1], r[0])):
        agents.setdefault(rec[2], []).append(rec)
    main_name = "main" if "main" in agents else min(agents)
    main = agents.pop(main_name)
    contexts = {main_name: 0, **{a: i + 1 for i, a in enumerate(sorted(agents))}}

    def chain(agent: str, recs: list[tuple]) -> list:
        steps: list = []
        for _, _, _, prompt, out, think, _ in recs:
            if think > 0 and steps:
                steps.append(ToolCall((think,)))
            prompt, out = clip(prompt, out)
            steps.append(_context_call(prompt, out, contexts[agent]))
        return steps

    waits: dict[int, list[str]] = {}
    g = 1
    for agent in sorted(agents):
        recs = agents[agent]
        while g < len(main) and main[g][5] < _span(recs):
            g += 1
        waits.setdefault(g, []).append(agent)
    steps: list = []
    for j, (_, _, _, prompt, out, think, _) in enumerate(main):
        if j and (think > 0 or j in waits):
            rest = think
            if j in waits:
                steps.append(Fork(tuple(tuple(chain(a, agents[a])) for a in waits[j])))
                rest = think - max(_span(agents[a]) for a in waits[j])
            if rest > 0:
                steps.append(ToolCall((rest,)))
        prompt, out = clip(prompt, out)
        steps.append(_context_call(prompt, out, 0))
    if len(main) in waits:  # sub-agents that fit no wait run after the main agent's last call
        steps.append(Fork(tuple(tuple(chain(a, agents[a])) for a in waits[len(main)])))
    return tuple(steps)


def _span(recs: list[tuple]) -> float:
    """Seconds from a sub-agent's first call to the end of its last (server time included)."""
    return recs[-1][0] - recs[0][0] + recs[-1][6]


def _csv_number(row: dict, col: str, where: str, blank: float | None = None) -> float:
    """A CSV field of seconds: finite and >= 0; `blank` is the value of an empty or absent field where allowed."""
    text = (row.get(col) or "").strip()
    if not text and blank is not None:
        return blank
    try:
        value = float(text)
    except ValueError:
        raise FleetsimError(f"{where}: field '{col}' must be a finite number of seconds >= 0, got {text!r}") from None
    return _seconds(value, where, col)


def _csv_integer(row: dict, col: str, where: str, low: int, high: int | None) -> int:
    text = (row.get(col) or "").strip()
    try:
        value: Any = int(text)
    except ValueError:
        value = text
    return _integer(value, where, col, low, high)


def read_trtllm(path: Path, pid: int, clip: _Clipper) -> AgentProgram:
    doc = read_json(path)
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, list):
        raise FleetsimError(f"{path}: expected a TensorRT-LLM scaffolding trace (an object with an 'events' list)")
    steps: list[LLMCall | ToolCall] = []
    branches: dict[tuple, float] = {}
    for i, ev in enumerate(events):
        where = f"{path}: events[{i}]"
        if not isinstance(ev, dict):
            raise FleetsimError(f"{where}: expected an object")
        if ev.get("event_type") == "tool_call":
            ms = _seconds(ev.get("duration_ms"), where, "duration_ms", unit="milliseconds")
            branch = ev.get("branch_path") or []
            if not isinstance(branch, list) or not all(isinstance(b, (int, str)) and not isinstance(b, bool)
                                                       for b in branch):
                raise FleetsimError(f"{where}: field 'branch_path' must be a list of integers or names, "
                                    f"got {branch!r}")
            key = tuple(branch)
            branches[key] = branches.get(key, 0.0) + ms / 1000.0  # one branch's calls run one after another
        elif ev.get("event_type") == "message" and ev.get("role") == "assistant":
            prompt = _integer(ev.get("prompt_tokens"), where, "prompt_tokens")
            out = _integer(ev.get("completion_tokens"), where, "completion_tokens")
            if branches and steps:
                steps.append(ToolCall(tuple(branches.values())))
            branches = {}
            prompt, out = clip(prompt, out)
            steps.append(_context_call(prompt, out, 0))
    if not steps:
        raise FleetsimError(f"{path}: the trace has no assistant messages (LLM calls)")
    return AgentProgram(pid, tuple(steps))


def read_jobs_jsonl(path: Path, clip: _Clipper) -> tuple[list[AgentProgram], list[str]]:
    try:
        return _read_jobs_jsonl(path, clip)
    except UnicodeDecodeError as exc:
        raise FleetsimError(f"{path}: not UTF-8 text (byte {exc.start} of a line: {exc.reason})") from None


def _read_jobs_jsonl(path: Path, clip: _Clipper) -> tuple[list[AgentProgram], list[str]]:
    jobs: dict[str, list[LLMCall | ToolCall]] = {}
    with open(path, encoding="utf-8") as fh:
        for line, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                ev = json.loads(text)
            except json.JSONDecodeError as exc:
                raise FleetsimError(f"{path}:{line}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(ev, dict) or "job" not in ev:
                raise FleetsimError(f"{path}:{line}: expected an object with a 'job' field")
            where = f"{path}:{line}"
            if not isinstance(ev["job"], (str, int)) or isinstance(ev["job"], bool):
                raise FleetsimError(f"{where}: field 'job' must be a name (text or an integer), got {ev['job']!r}")
            steps = jobs.setdefault(str(ev["job"]), [])
            kind = ev.get("type")
            if kind == "llm":
                prompt = _integer(ev.get("prompt_tokens"), where, "prompt_tokens")
                out = _integer(ev.get("output_tokens"), where, "output_tokens")
                context = _integer(ev.get("context", 0), where, "context", low=0, high=MAX_CONTEXTS)
                prompt, out = clip(prompt, out)
                steps.append(_context_call(prompt, out, context))
            elif kind == "tool":
                durations = ev.get("durations_s")
                if not isinstance(durations, list) or not durations:
                    raise FleetsimError(f"{where}: field 'durations_s' must be a non-empty list of seconds, "
                                        f"got {durations!r}")
                steps.append(ToolCall(tuple(_seconds(d, where, "durations_s") for d in durations)))
            else:
                raise FleetsimError(f"{path}:{line}: field 'type' must be 'llm' or 'tool', got {kind!r}")
    if not jobs:
        raise FleetsimError(f"{path}: empty file")
    names = sorted(jobs)
    programs = []
    for pid, name in enumerate(names):
        if not any(isinstance(s, LLMCall) for s in jobs[name]):
            raise FleetsimError(f"{path}: job '{name}' has no LLM calls")
        programs.append(AgentProgram(pid, tuple(jobs[name])))
    return programs, names


def read_agent_trace(path: str | Path, max_tokens: int | None = None) -> tuple[list[AgentProgram], list[str], int]:
    """Jobs from an agent trace (any format above, by the file's shape): (jobs, job names, calls clipped)."""
    path = Path(path)
    clip = _Clipper(max_tokens)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise FleetsimError(f"{path}: no session files (*.json) in the folder")
    elif path.is_file():
        files = [path]
    else:
        raise FleetsimError(f"agent trace '{path}': no such file or folder")
    if len(files) == 1 and (path.suffix == ".jsonl"):
        programs, names = read_jobs_jsonl(path, clip)
        return programs, names, clip.count
    if len(files) == 1 and path.name.endswith((".csv", ".csv.gz")):
        programs, names = read_weka_csv(path, clip)
        return programs, names, clip.count
    programs, names = [], []
    for pid, f in enumerate(files):
        doc = read_json(f)
        if isinstance(doc, dict) and "events" in doc:
            programs.append(read_trtllm(f, pid, clip))
        else:
            prog, c = read_weka_session(f, pid, max_tokens)
            clip.count += c
            programs.append(prog)
        names.append(f.stem)
    return programs, names, clip.count
