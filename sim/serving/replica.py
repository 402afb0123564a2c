"""One replica's engine: a SimPy process that forms a batch each iteration and advances time by its cost.

Scheduling follows vLLM v1 (and Sarathi-Serve) for the continuous policy: running decodes first (one token each),
then partially prefilled requests, then new requests in FCFS order, within `max_num_batched_tokens` and
`max_num_seqs`; a request that needs a KV block when none is free preempts the most recently admitted request,
which is recomputed later. Without chunked prefill, whole prompts run in prefill-only steps that stall the decodes
(vLLM v0's default). The static policy forms a batch when the replica is empty and runs it to completion.

Fast-forward: decoding requests advance in lock-step, so their token counts are stored relative to the replica's
decode-step counter. While nothing can change the batch (no prefill running, no admissible waiting request, no
completion, enough free blocks), a run of K decode steps is one SimPy event whose step times are computed as one
numpy vector; an arrival that could join interrupts it at the end of the step in progress. The result equals
stepping one iteration at a time (tests/test_fast_forward.py).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from collections.abc import Callable

import numpy as np
import simpy

from sim.cost.iteration import IterationCost
from sim.serving.engine_config import EngineConfig
from sim.serving.host_cache import HostKVCache
from sim.serving.kv_cache import KVCache
from sim.serving.request import DECODE, FINISHED, PREFILL, REJECTED, WAITING, Request


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Replica:
    def __init__(self, env: simpy.Environment, index: int, cost: IterationCost, kv: KVCache, cfg: EngineConfig,
                 max_model_len: int, on_finish: Callable[[Request], None] | None = None) -> None:
        self.env, self.index, self.cost, self.kv, self.cfg = env, index, cost, kv, cfg
        self.max_model_len = max_model_len
        self.on_finish = on_finish
        self.B = kv.block_size
        self.watermark_blocks = int(cfg.watermark * kv.num_blocks)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # admission order: the tail is preempted first
        self.prefilling: list[Request] = []  # running requests still in prefill, admission order
        # Lock-step decoders: count, sum of `base`, histogram of base mod B, heap of (finish dstep, seq, request).
        self.n_dec = 0
        self.dec_base_sum = 0
        self.phase = [0] * self.B
        self.finish_heap: list[tuple[int, int, Request]] = []
        self.dstep = 0  # decode-advancing steps done; decoders' token counts are relative to it
        self.steps = 0  # all steps done
        self.busy_s = 0.0
        self.dends: list[np.ndarray] = []  # end time of every decode-advancing step, in chunks
        self._dends_pending: list[float] = []
        self.kv_times: list[float] = []
        self.kv_used: list[int] = []
        self.events = 0
        self.clock = env.now  # the replica's own time: ahead of env.now while steps are chained
        self._seq = 0
        self.preemptions = 0
        self._decode_blocks_step = -1  # the decode step whose block allocations are done
        self._idle: simpy.Event | None = None
        self.host: HostKVCache | None = None  # CPU offloading target, when the agents' policy offloads
        self._load_s = 0.0  # host-to-GPU loads the step being planned waits for
        self._segment = False  # inside a multi-step fast-forward segment (interruptible)
        self._interrupted = False
        self.process = env.process(self._run())

    def memory_released(self) -> None:
        """Blocks held outside any request were let go: a replica waiting for memory tries again."""
        if self._idle is not None:
            idle, self._idle = self._idle, None
            idle.succeed()

    # ---- arrivals ----------------------------------------------------------------------------------------------
    def enqueue(self, r: Request) -> None:
        r.replica = self.index
        if r.prompt + r.output > self.max_model_len:
            r.state = REJECTED
            r.finish_time = self.env.now
            if self.on_finish:
                self.on_finish(r)
            return
        head = self._queue(r)
        if self._idle is not None:
            idle, self._idle = self._idle, None
            idle.succeed()
        elif (self._segment and not self._interrupted and head and self.cfg.policy == "continuous"
              and len(self.running) < self.cfg.max_num_seqs):
            self._interrupted = True
            self.process.interrupt()

    def _queue(self, r: Request) -> bool:
        """Put an arrival in the waiting queue; True when it lands at the head (it may be admissible now)."""
        waiting = self.waiting
        if self.cfg.scheduling == "program":
            i = len(waiting)
            while i > 0 and waiting[i - 1].priority > r.priority and waiting[i - 1].preemptions == 0:
                i -= 1  # ahead of later jobs' calls, never ahead of preempted requests put back at the front
            waiting.insert(i, r)
            return i == 0
        waiting.append(r)
        return len(waiting) == 1

    # ---- the engine loop ---------------------------------------------------------------------------------------
    def _run(self):  # noqa: ANN202  (a SimPy process generator)
        """Plan a step, let its time pass, apply its effects; repeat.

        Chaining: with fast-forward on, a step that ends before the next event anywhere in the simulation
        (env.peek()) and finishes no request is applied on the replica's own clock without a SimPy event: nothing
        else can observe the replica meanwhile. The clock is synchronised (one timeout) before anything that other
        processes may observe: a completion, an interruptible decode run, going idle."""
        env = self.env
        chain = self.cfg.fast_forward
        self.clock = env.now
        while True:
            if not self.running and not self.waiting:
                yield from self._sleep()
                continue
            preemptions_before = self.preemptions
            chunks, advance, stable = self._schedule()
            if not chunks and not (advance and self.n_dec):
                if self.preemptions != preemptions_before:
                    continue  # the batch was preempted away; the next plan re-admits from the queue
                if not self.running and self.kv.used:
                    # Memory held outside any request (agent jobs' pinned KV): wait until some is let go.
                    yield from self._sleep()
                    continue
                # Arrivals are length-checked on entry, so an empty replica always admits its queue's head.
                raise RuntimeError(f"replica {self.index}: no progress with {len(self.waiting)} waiting requests")
            if not chunks:
                k_max = self._decode_horizon() if (chain and stable) else 1
                if k_max == 1:
                    t = self.cost.decode_time(self.n_dec, self.dec_base_sum + self.n_dec * (self.dstep + 1))
                    end = self.clock + t
                    if not (chain and end < env.peek() and not self._decoder_finishes(self.dstep)):
                        self.events += 1
                        yield env.timeout(end - env.now)
                        end = env.now
                    self.clock = end
                    self._finish_decode_run(1, None, t)
                else:
                    if self.clock > env.now:
                        yield env.timeout(self.clock - env.now)  # nothing fires before the clock (see above)
                    self.events += 1
                    yield from self._decode_run(k_max)
            else:
                n_dec = self.n_dec if advance else 0
                kv_sum = self.dec_base_sum + n_dec * (self.dstep + 1) if n_dec else 0
                shapes = []
                logits = n_dec
                finishes = advance and self._decoder_finishes(self.dstep)
                for r, n in chunks:
                    shapes.append((n, r.computed))
                    if n == r.prompt + r.generated - r.computed:
                        logits += 1
                        finishes = finishes or r.generated + 1 >= r.target
                t = self.cost.step_time(shapes, n_dec, kv_sum, num_logits=logits) + self._load_s
                self._load_s = 0.0
                end = self.clock + t
                if not (chain and end < env.peek() and not finishes):
                    self.events += 1
                    yield env.timeout(end - env.now)
                    end = env.now
                self.clock = end
                self._finish_mixed_step(chunks, advance, t)
            self.kv_times.append(self.clock)
            self.kv_used.append(self.kv.used)

    def _sleep(self):  # noqa: ANN202  (generator)
        """Synchronise the clock, then wait to be woken: by an arrival, or by memory let go."""
        env = self.env
        if self.clock > env.now:
            yield env.timeout(self.clock - env.now)
        self._idle = env.event()
        yield self._idle
        self.clock = env.now

    def _decode_run(self, k_max: int):  # noqa: ANN202  (generator)
        """Run up to k_max identical-shape decode steps as one event; an arrival that could join interrupts it at
        the end of the step in progress."""
        env = self.env
        now = env.now
        n = self.n_dec
        ends = self.cost.decode_run_ends(n, self.dec_base_sum + n * (self.dstep + 1), k_max, now)
        k = k_max
        self._segment, self._interrupted = True, False
        try:
            yield env.timeout(ends[-1] - now)
        except simpy.Interrupt:
            k = min(bisect_left(ends, env.now) + 1, k_max)
            while ends[k - 1] - env.now > 1e-12:
                try:
                    yield env.timeout(ends[k - 1] - env.now)
                except simpy.Interrupt:
                    pass
        self._segment = False
        self.clock = env.now
        self._finish_decode_run(k, ends[:k], float(ends[k - 1]) - now)

    def _decoder_finishes(self, dstep: int) -> bool:
        """Whether some decoder produces its last token at decode step `dstep`."""
        heap = self.finish_heap
        while heap and (heap[0][2].state != DECODE or heap[0][2].finish_step != heap[0][0]
                        or heap[0][2].seq != heap[0][1]):
            heapq.heappop(heap)
        return bool(heap) and heap[0][0] <= dstep

    # ---- scheduling --------------------------------------------------------------------------------------------
    def _schedule(self) -> tuple[list[tuple[Request, int]], bool, bool]:
        """Plan the next step. Returns (prefill chunks, whether decoders advance, whether the batch is stable).
        Decode blocks for the step are allocated here; `stable` means no waiting request could join."""
        cfg = self.cfg
        if cfg.policy == "static":
            if not self.running:
                return self._admit(budget=1 << 62, whole=True), True, False
            self._allocate_decode_blocks()
            return [], True, True
        if not cfg.chunked_prefill and self.waiting and len(self.running) < cfg.max_num_seqs:
            chunks = self._admit(budget=cfg.max_num_batched_tokens, whole=True)
            if chunks:
                return chunks, False, False
        preempted = self._allocate_decode_blocks()
        chunks: list[tuple[Request, int]] = []
        budget = cfg.max_num_batched_tokens - self.n_dec
        if cfg.chunked_prefill:
            for r in list(self.prefilling):
                if budget <= 0:
                    break
                if r.state != PREFILL:
                    continue  # preempted while making room for an earlier request
                n = min(r.prompt + r.generated - r.computed, budget)
                if not self._grow(r, r.computed + n):
                    preempted = True
                    continue
                chunks.append((r, n))
                budget -= n
        blocked = False
        if not preempted and self.waiting:
            new = self._admit(budget=budget, whole=not cfg.chunked_prefill)
            chunks.extend(new)
            blocked = bool(self.waiting)
        stable = not chunks and not preempted and (not self.waiting or blocked)
        return chunks, True, stable

    def _allocate_decode_blocks(self) -> bool:
        """Blocks for the decoders whose next token starts a new block; preempt from the tail until they fit."""
        kv, phase, slot = self.kv, self.phase, (-self.dstep) % self.B
        preempted = False
        while phase[slot] > kv.num_blocks - kv.used and self.running:
            self._preempt(self.running[-1])
            preempted = True
        if phase[slot]:
            kv.allocate(phase[slot])
        self._decode_blocks_step = self.dstep
        return preempted

    def _grow(self, r: Request, kv_tokens: int) -> bool:
        """Give a prefilling request blocks for `kv_tokens`; preempt later requests (or itself) if needed."""
        need = _ceil_div(kv_tokens, self.B) - r.blocks
        if need <= 0:
            return True
        while need > self.kv.available:
            victim = self.running[-1]
            self._preempt(victim)
            if victim is r:
                return False
        self.kv.allocate(need)
        r.blocks += need
        return True

    def _admit(self, budget: int, whole: bool) -> list[tuple[Request, int]]:
        """Admit waiting requests in FCFS order while seats, budget and memory (above the watermark) allow."""
        chunks: list[tuple[Request, int]] = []
        kv, waiting, running, max_seqs, B = self.kv, self.waiting, self.running, self.cfg.max_num_seqs, self.B
        while waiting and len(running) < max_seqs and budget > 0:
            r = waiting[0]
            hits, hit_cached_blocks, held = 0, 0, 0
            unit_blocks = r.prefix_unit_tokens // self.B if (r.prefix_keys and not r.kv_ready) else 0
            if unit_blocks:
                max_units = min(len(r.prefix_keys), (r.prompt - 1) // r.prefix_unit_tokens)
                hits = kv.match(r.prefix_keys, max_units)
                hit_cached_blocks = sum(unit_blocks for key in r.prefix_keys[:hits] if key not in kv.active)
                held = hits * unit_blocks
            start = hits * r.prefix_unit_tokens
            private = 0
            if r.private_blocks:
                if hits == r.private_units and r.private_key in kv.cached:
                    private = min(r.private_blocks, (r.num_tokens - 1 - start) // self.B)
                if private > 0:
                    hit_cached_blocks += r.private_blocks
                    held += r.private_blocks
                    start += private * self.B
            loaded = 0
            if unit_blocks and r.host_units > hits and not private:
                # Units past the GPU's hits come back from the host copy: no compute, fresh blocks.
                loaded = min(r.host_units, max_units) - hits
                start += loaded * r.prefix_unit_tokens
            if r.kv_ready:
                # KV computed elsewhere (a prefill pool) arrives with the request: no compute, fresh blocks.
                start = max(start, min(r.kv_ready, r.prompt + r.generated - 1))
            remaining = r.prompt + r.generated - start
            n = min(remaining, budget)
            if whole and n < remaining and chunks:
                break  # unchunked: a prompt never splits; the first one of a step may exceed the budget
            if whole:
                n = remaining
            new_blocks = max(0, -(-(start + n) // B) - held)
            if kv.num_blocks - kv.used - hit_cached_blocks - new_blocks < self.watermark_blocks:
                break
            waiting.popleft()
            keys = list(r.prefix_keys[:hits]) if hits else []
            if private > 0:
                keys.append(r.private_key)
            elif r.private_blocks:
                kv.drop(r.private_key)  # evicted in part, or no longer a prefix: it cannot be hit
            if keys:
                kv.acquire(keys)
            r.keys_held = keys
            r.held_blocks = held
            r.private_blocks = 0
            if loaded > 0:
                self._load_s += max(0, loaded - r.host_paid) * unit_blocks * self.host.s_per_block
                self.host.loaded_blocks += loaded * unit_blocks
            r.host_paid = 0  # a later admission (after a preemption) pays for its own loads
            if kv.prefix_caching and not r.kv_ready:
                r.prefix_hit_tokens += start
                r.lookup_tokens += r.num_tokens
            # Past its own cached KV the request does not offer shared units again (they would be counted twice).
            r.units_seen = len(r.prefix_keys) if ((private > 0 or r.kv_ready) and r.prefix_keys) else hits
            r.computed = start
            kv.allocate(new_blocks)
            r.blocks = held + new_blocks
            r.state = PREFILL
            self._seq += 1
            r.seq = self._seq
            if r.first_scheduled < 0:
                r.first_scheduled = self.clock
            running.append(r)
            self.prefilling.append(r)
            chunks.append((r, n))
            budget -= n
        return chunks

    # ---- state changes -----------------------------------------------------------------------------------------
    def _preempt(self, r: Request) -> None:
        """Free a running request's KV and put it at the head of the queue; it is recomputed from scratch."""
        self.running.remove(r)
        if r.state == DECODE:
            # It emitted through decode step dstep - 1; this step's slot may have been allocated already.
            self._leave_decode(r, self.dstep, self._decode_blocks_step == self.dstep)
        else:
            self.prefilling.remove(r)
        self._release(r, r.computed)
        r.computed = 0
        r.units_seen = 0
        r.kv_ready = 0  # transferred KV is gone with the blocks: this replica recomputes it
        r.state = WAITING
        r.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(r)

    def _leave_decode(self, r: Request, dstep: int, slot_allocated: bool = False) -> None:
        """Materialise a decoder's counters at decode step `dstep` (before it runs) and drop it from lock-step.
        `slot_allocated`: the block for step dstep's token was already handed out."""
        r.generated = r.gbase + dstep
        r.computed = r.base + dstep
        self.n_dec -= 1
        self.dec_base_sum -= r.base
        self.phase[r.base % self.B] -= 1
        t0, first, _ = r.emit_runs[-1]
        r.emit_runs[-1] = (t0, first, dstep - 1)
        r.finish_step = -1  # invalidates its heap entry
        # Blocks handed out while decoding: one each time the KV length crossed a block boundary.
        r.blocks += _ceil_div(r.computed + slot_allocated, self.B) - _ceil_div(r.base + first, self.B)

    def _enter_decode(self, r: Request) -> None:
        """A request whose prefill just emitted a token joins the lock-step decoders from the next decode step."""
        d = self.dstep
        r.state = DECODE
        r.base = r.computed - d
        r.gbase = r.generated - d
        r.finish_step = r.target - 1 - r.gbase
        self.n_dec += 1
        self.dec_base_sum += r.base
        self.phase[r.base % self.B] += 1
        r.emit_runs.append((self.clock, d, d - 1))
        heapq.heappush(self.finish_heap, (r.finish_step, r.seq, r))

    def _finish(self, r: Request) -> None:
        self.running.remove(r)
        if r.prefix_keys and self.kv.prefix_caching:
            # Keys that reach past the prompt (an agent's context) cover generated tokens too: their full units
            # stay cached for the job's next call, as vLLM hashes every full block.
            self._register_units(r, r.computed)
        self._release(r, None)
        r.state = FINISHED
        r.finish_time = self.clock
        if self.on_finish:
            self.on_finish(r)

    def _release(self, r: Request, keep_tokens: int | None) -> None:
        """Give back a request's KV blocks. With `keep_tokens` (a preemption) and prefix caching on, its full blocks
        past the shared units stay cached as its private entry, so recomputation can reuse them."""
        kv = self.kv
        keys = r.keys_held
        own = r.blocks - r.held_blocks
        if keys and keys[-1] == r.private_key:
            own += kv.take(keys.pop())
        shared_blocks = len(keys) * (r.prefix_unit_tokens // self.B) if keys else 0
        keep = 0
        if keep_tokens is not None and kv.prefix_caching:
            keep = min(own, keep_tokens // self.B - shared_blocks)
        keep = max(keep, 0)
        kv.release(own - keep, keys)
        kv.cache_private(r.private_key, keep)
        r.private_blocks, r.private_units = keep, len(keys)
        r.keys_held = []
        r.held_blocks = 0
        r.blocks = 0

    def _register_units(self, r: Request, upto: int | None = None) -> None:
        """Offer the cache the request's full units computed so far (within the prompt unless `upto` says)."""
        if not r.prefix_keys:
            return
        unit_blocks = r.prefix_unit_tokens // self.B
        limit = min(r.computed, r.prompt) if upto is None else upto
        done = min(len(r.prefix_keys), limit // r.prefix_unit_tokens)
        while r.units_seen < done:
            key = r.prefix_keys[r.units_seen]
            r.units_seen += 1
            if self.kv.register(key, unit_blocks):
                r.keys_held.append(key)
                r.held_blocks += unit_blocks
            else:
                r.units_seen = len(r.prefix_keys)  # a duplicate breaks the chain: keep the rest private
                break

    def _finish_mixed_step(self, chunks: list[tuple[Request, int]], advance: bool, t: float) -> None:
        now = self.clock
        self.steps += 1
        self.busy_s += t
        if advance:
            self._dends_pending.append(now)
            self._complete_decodes(self.dstep)
            self.dstep += 1
        for r, n in chunks:
            r.computed += n
            if r.prefix_keys:
                self._register_units(r)
            if r.computed < r.prompt + r.generated:
                continue
            self.prefilling.remove(r)
            r.generated += 1
            if r.first_token_time < 0:
                r.first_token_time = now
            if r.generated >= r.target:
                r.emit_runs.append((now, 0, -1))
                self._finish(r)
            else:
                self._enter_decode(r)

    def _finish_decode_run(self, k: int, ends: np.ndarray | list[float] | None, busy: float) -> None:
        """Account for k pure-decode steps that just ran (`ends`: their end times; None for a single step)."""
        self.steps += k
        self.busy_s += busy
        if ends is None:
            self._dends_pending.append(self.clock)
        elif isinstance(ends, list):
            self._dends_pending.extend(ends)
        else:
            if self._dends_pending:
                self.dends.append(np.array(self._dends_pending))
                self._dends_pending = []
            self.dends.append(ends)
        if ends is not None:
            # Blocks for decode steps 2..k of the run (step 1's were allocated when it was scheduled).
            self.kv.allocate(self._allocations(self.dstep + 1, k - 1))
        last = self.dstep + k - 1
        self._complete_decodes(last)
        self.dstep += k

    def _complete_decodes(self, last: int) -> None:
        """Finish the decoders whose last token was produced at decode step `last` (or earlier)."""
        heap = self.finish_heap
        while heap and heap[0][0] <= last:
            fstep, seq, r = heapq.heappop(heap)
            if r.state != DECODE or r.finish_step != fstep or r.seq != seq:
                continue  # stale entry of a request preempted since
            self._leave_decode(r, fstep + 1)
            self._finish(r)

    # ---- fast-forward horizon --------------------------------------------------------------------------------
    def _allocations(self, first: int, k: int) -> int:
        """Blocks the decoders allocate over decode steps first .. first+k-1."""
        B, total = self.B, 0
        full, rest = divmod(k, B)
        total = full * self.n_dec
        if rest:
            for p, c in enumerate(self.phase):
                if c and (-(p + first)) % B < rest:
                    total += c
        return total

    def _decode_horizon(self) -> int:
        """How many decode steps can run before the batch changes: the first completion, or the first step whose
        block allocations would not fit (that step then runs alone and preempts)."""
        self._decoder_finishes(self.dstep)  # drops stale heap entries
        k_finish = self.finish_heap[0][0] - self.dstep + 1
        if k_finish <= 1:
            return 1
        # Evicting cached prefixes changes what a waiting request would hit (and what a prefix-aware router sees),
        # so a run never evicts: the step that must evict runs alone.
        free = self.kv.num_free if self.kv.cached else self.kv.available
        n, B = self.n_dec, self.B
        full = free // n
        k_mem = full * B
        if 1 + k_mem >= k_finish:
            return k_finish
        # Within the next partial cycle, walk the steps in order while their allocations still fit.
        left = free - full * n
        first = self.dstep + 1 + k_mem
        phase = self.phase
        for offset in range(B):
            c = phase[(-(first + offset)) % B]
            if c > left:
                break
            left -= c
        return max(1, min(k_finish, 1 + k_mem + offset))

    # ---- results -----------------------------------------------------------------------------------------------
    def decode_step_ends(self) -> np.ndarray:
        if self._dends_pending:
            self.dends.append(np.array(self._dends_pending))
            self._dends_pending = []
        return np.concatenate(self.dends) if self.dends else np.zeros(0)
