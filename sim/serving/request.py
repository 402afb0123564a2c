"""Per-request state while it is served; compact (__slots__), no Python object per token."""

from __future__ import annotations

WAITING, PREFILL, DECODE, FINISHED, REJECTED = range(5)


class Request:
    """One LLM request. Decoding requests advance in lock-step with their replica's step counter, so their token
    counts are stored relative to it (`base`): tokens in KV at step j = base + j. This lets a replica advance many
    decode steps without touching each request."""

    __slots__ = (
        "rid", "arrival", "prompt", "output", "prefix_keys", "prefix_unit_tokens",
        "replica", "lane", "state", "computed", "generated", "blocks", "keys_held", "held_blocks", "units_seen", "seq",
        "private_blocks", "private_units", "lookup_tokens", "target", "kv_ready", "host_units", "host_paid", "program", "turn", "priority",
        "base", "gbase", "finish_step", "decode_since", "emit_runs",
        "first_scheduled", "first_token_time", "finish_time", "preemptions", "prefix_hit_tokens", "done",
        "prefill_due", "prefill_done",
    )

    def __init__(self, rid: int, arrival: float, prompt: int, output: int,
                 prefix_keys: tuple[int, ...] | None = None, prefix_unit_tokens: int = 0) -> None:
        self.rid = rid
        self.arrival = arrival
        self.prompt = prompt
        self.output = output
        self.prefix_keys = prefix_keys
        self.prefix_unit_tokens = prefix_unit_tokens
        self.replica = -1
        self.lane = -1  # the engine (scheduler) serving it: an attention rank or pipeline micro-batch of the replica
        self.state = WAITING
        self.computed = 0  # tokens whose KV is computed (valid while not decoding)
        self.generated = 0  # output tokens sampled so far (valid while not decoding)
        self.blocks = 0  # KV blocks held (valid while not decoding; decoding: ceil(kv / block_size))
        self.keys_held: list[int] = []  # prefix-cache entries this request references (its own entry last)
        self.held_blocks = 0  # KV blocks of those entries
        # After a preemption (prefix caching on), the request's own full KV blocks stay cached as one entry keyed
        # `private_key`, covering the tokens right after its first `private_units` shared prefix units.
        self.private_blocks = 0
        self.private_units = 0
        self.lookup_tokens = 0  # tokens looked up in the prefix cache at admissions
        self.target = output  # output tokens to reach on the current replica (1 in a prefill-only pool)
        self.kv_ready = 0  # prompt tokens whose KV arrives with the request (from a prefill pool)
        # CPU offloading: leading prefix units a host copy can supply at admission, and how many of them the caller
        # has already waited to load (the rest are loaded within the admitting step).
        self.host_units = 0
        self.host_paid = 0
        self.program = -1  # the agent job it belongs to, and its turn there (-1: not an agent's)
        self.turn = -1
        self.priority = arrival  # program scheduling: the job's arrival (smaller goes first)
        self.units_seen = 0  # prefix units already matched or offered to the cache
        self.seq = 0  # admission order, for deterministic ties
        self.base = 0
        self.gbase = 0
        self.finish_step = -1
        self.decode_since = -1  # decode-step index of the first decode step of the current decode run
        # One entry per run of token emissions: (time of the run's first token, first and last decode-step index
        # of the decode steps that followed it). Preemption ends a run; the re-prefill starts the next.
        self.emit_runs: list[tuple[float, int, int]] = []
        self.first_scheduled = -1.0
        self.first_token_time = -1.0
        self.finish_time = -1.0
        self.preemptions = 0
        self.prefix_hit_tokens = 0
        # Prefill tokens owed (prompt and output so far, less what was cached or arrived) summed over admissions, and
        # those computed: equal once the request has finished (checked by the invariant tests).
        self.prefill_due = 0
        self.prefill_done = 0
        self.done = None  # a SimPy event succeeded at completion, when a caller (an agent) waits on it

    @property
    def private_key(self) -> int:
        return -1 - self.rid  # trace prefix ids are >= 0

    @property
    def num_tokens(self) -> int:
        """Tokens known so far (prompt plus sampled output) while not decoding."""
        return self.prompt + self.generated
