"""Which trace format a file is, from its content (its name only for gzip): the CSV header's columns, or the keys
of the first JSON object."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from sim.errors import FleetsimError

CSV_HEADERS = {  # format: columns its header must contain (case-insensitive)
    "azure": {"timestamp", "contexttokens", "generatedtokens"},
    "burstgpt": {"timestamp", "request tokens", "response tokens"},
    "splitwise": {"arrival_timestamp", "prompt_size", "token_size"},
    "vidur": {"arrived_at", "num_prefill_tokens", "num_decode_tokens"},
    "agent": {"trace_id", "in_tokens", "out_tokens"},
}
_WHOLE_JSON_LIMIT = 256 << 20  # a pretty-printed JSON document is parsed whole to sniff it, up to this size


def _json_kind(obj: object) -> str | None:
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    if keys & {"input_lens", "ttfts"}:
        return "vllm-bench"
    if "requests" in keys or "events" in keys or {"job", "type"} <= keys:
        return "agent"
    if keys & {"hash_ids", "input_length"}:
        return "mooncake"
    response = obj.get("response")
    if "usage" in keys or (isinstance(response, dict) and "usage" in response):
        return "openai"
    return None


def sniff(path: Path, formats: tuple[str, ...]) -> str:
    """The format of `path`, or one clear error listing what it could be."""
    if path.is_dir():
        return "agent"  # a folder of session files
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
                head = fh.read(65536)
        else:
            with open(path, encoding="utf-8", errors="replace") as fh:
                head = fh.read(65536)
    except (OSError, EOFError) as exc:
        raise FleetsimError(f"{path}: cannot read ({exc})") from None
    head = head.lstrip("\ufeff")
    if not head.strip():
        raise FleetsimError(f"{path}: empty file")
    first = head.lstrip().splitlines()[0]
    if head.lstrip()[:1] in "{[":
        kind = None
        for line in head.splitlines()[:50]:  # JSON lines: the first line that parses decides
            try:
                kind = _json_kind(json.loads(line))
                break
            except json.JSONDecodeError:
                continue
        if kind is None and path.stat().st_size <= _WHOLE_JSON_LIMIT and not path.name.endswith(".gz"):
            try:  # one (pretty-printed) JSON document
                kind = _json_kind(json.loads(path.read_text(encoding="utf-8", errors="replace")))
            except json.JSONDecodeError:
                pass
        if kind is None:  # broken JSON: go by the key names it uses, so the reader can say which line is wrong
            kind = _json_kind(dict.fromkeys(re.findall(r'"([A-Za-z_]+)"\s*:', head)))
        if kind:
            return kind
        raise FleetsimError(f"{path}: JSON, but not a known trace (its first object's keys match none of "
                            f"{', '.join(formats)}); pass --format")
    columns = {c.strip().strip('"').lower() for c in first.split(",")}
    for fmt, needed in CSV_HEADERS.items():
        if needed <= columns:
            return fmt
    raise FleetsimError(f"{path}: unknown trace format (first line {first[:60]!r}); pass --format "
                        f"({', '.join(formats)})")
