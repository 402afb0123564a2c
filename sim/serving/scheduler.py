"""One engine's scheduler: its waiting queue, its running batch and its KV cache; it plans each step's share and
applies it once the step's time has passed.

A replica holds one scheduler per attention rank and pipeline micro-batch (sim/serving/replica.py), each with the
engine's full `max_num_batched_tokens` and `max_num_seqs`, as every vLLM data-parallel engine core (and every v0
pipeline virtual engine) has its own.

Scheduling follows vLLM v1 (vllm/v1/core/sched/scheduler.py, and Sarathi-Serve) for the continuous policy: running
decodes first (one token each), then partially prefilled requests, then new requests in FCFS order, within the
token budget and max_num_seqs; a request that needs a KV block when none is free preempts the most recently admitted
request, which is recomputed later. Without chunked prefill, whole prompts run in prefill-only steps that stall the
decodes (vLLM v0's default). The static policy forms a batch when the engine is empty and runs it to completion.

Lock-step decoders: decoding requests advance one token per decode-advancing step, so their token counts are
stored relative to the scheduler's decode-step counter (`Request.base`, `gbase`): K steps are `dstep += K`. Kept
incrementally for the fast-forward horizon: the number of decoders, the sum of their bases (a step's KV sum is
linear in the step index), a histogram of bases modulo the block size (which step needs how many new blocks) and a
heap of finish steps.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable

import numpy as np

from sim.cost.step_plan import RankBatch
from sim.serving.engine_config import EngineConfig
from sim.serving.host_cache import HostKVCache
from sim.serving.kv_cache import KVCache
from sim.serving.request import DECODE, FINISHED, PREFILL, REJECTED, WAITING, Request

Chunks = list[tuple[Request, int]]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Scheduler:
    def __init__(self, uid: int, kv: KVCache, cfg: EngineConfig, max_model_len: int,
                 on_finish: Callable[[Request], None]) -> None:
        self.uid = uid  # unique over the simulation: requests name the scheduler whose decode steps they joined
        self.kv, self.cfg, self.max_model_len, self.on_finish = kv, cfg, max_model_len, on_finish
        self.B = kv.block_size
        self.watermark_blocks = int(cfg.watermark_fraction * kv.num_blocks)
        # vLLM v0 reserves a new request's whole prompt at admission; v1 only the tokens scheduled in the step.
        self.whole_prompt_admission = cfg.spec.whole_prompt_admission
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # admission order: the tail is preempted first
        self.prefilling: list[Request] = []  # running requests still in prefill, admission order
        self.n_dec = 0
        self.dec_base_sum = 0
        self.phase = [0] * self.B
        self.finish_heap: list[tuple[int, int, Request]] = []
        self.dstep = 0  # decode-advancing steps done; decoders' token counts are relative to it
        self.dends: list[np.ndarray] = []  # end time of every decode-advancing step, in chunks
        self._dends_pending: list[float] = []
        self.now = 0.0  # the replica's clock at the step being planned or applied
        self._seq = 0
        self.preemptions = 0
        self._decode_blocks_step = -1  # the decode step whose block allocations are done
        self.host: HostKVCache | None = None  # CPU offloading target, when the agents' policy offloads
        self.load_s = 0.0  # host-to-GPU loads the step being planned waits for

    # ---- arrivals ----------------------------------------------------------------------------------------------
    def accepts(self, r: Request) -> bool:
        """Whether the request fits this engine's context at all (vLLM rejects longer ones): its prompt and the
        tokens it generates here (one in a prefill pool, as a P/D deployment sends max_tokens=1 to the prefill
        engine)."""
        return r.prompt + r.target <= self.max_model_len

    def queue(self, r: Request) -> bool:
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

    def could_join(self) -> bool:
        """Whether an arrival at the head of the queue might join the running batch at the next step."""
        return self.cfg.policy == "continuous" and len(self.running) < self.cfg.max_num_seqs

    @property
    def unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    # ---- planning ------------------------------------------------------------------------------------------------
    def plan(self, now: float) -> tuple[Chunks, bool, bool] | None:
        """This engine's share of the next step: (prefill chunks, whether its decoders advance, whether its batch
        is stable: no waiting request could join). None when it has nothing to run now: empty, or its queue's head
        waits for memory held outside any request (agent jobs' pins). Blocks for the step are allocated here."""
        if not self.running and not self.waiting:
            return None
        self.now = now
        while True:
            before = self.preemptions
            chunks, advance, stable = self._schedule()
            if chunks or (advance and self.n_dec):
                return chunks, advance, stable
            if self.preemptions != before:
                continue  # the batch was preempted away; plan again, re-admitting from the queue
            if not self.running and self.kv.used:
                return None
            # Arrivals are length-checked on entry, so an empty engine always admits its queue's head.
            raise RuntimeError(f"engine {self.uid}: no progress with {len(self.waiting)} waiting requests")

    def rank_batch(self, chunks: Chunks, advance: bool) -> tuple[RankBatch, bool]:
        """The plan's shape for the cost model, and whether some request produces its last token in this step."""
        n_dec = self.n_dec if advance else 0
        kv_sum = self.dec_base_sum + n_dec * (self.dstep + 1) if n_dec else 0
        shapes = []
        logits = n_dec
        finishes = advance and self.decoder_finishes(self.dstep)
        for r, n in chunks:
            shapes.append((n, r.computed))
            if n == r.prompt + r.generated - r.computed:
                logits += 1
                finishes = finishes or r.generated + 1 >= r.target
        return RankBatch(shapes, n_dec, kv_sum, logits), finishes

    def decode_kv_sum(self) -> int:
        """KV sum of the decoders' next step (each one's new token included)."""
        return self.dec_base_sum + self.n_dec * (self.dstep + 1)

    def _schedule(self) -> tuple[Chunks, bool, bool]:
        cfg = self.cfg
        if cfg.policy == "static":
            if not self.running:
                return self._admit(budget=1 << 62, whole=True), True, False
            self._allocate_decode_blocks()
            return [], True, True
        if not cfg.chunked and self.waiting and len(self.running) < cfg.max_num_seqs:
            chunks = self._admit(budget=cfg.max_num_batched_tokens, whole=True)
            if chunks:
                return chunks, False, False
        preempted = self._allocate_decode_blocks()
        chunks: Chunks = []
        budget = cfg.max_num_batched_tokens - self.n_dec
        if cfg.chunked:
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
            new = self._admit(budget=budget, whole=not cfg.chunked)
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

    def _admit(self, budget: int, whole: bool) -> Chunks:
        """Admit waiting requests in FCFS order while seats, budget and memory (above the watermark) allow."""
        chunks: Chunks = []
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
            reserved = remaining if self.whole_prompt_admission else n
            new_blocks = max(0, -(-(start + reserved) // B) - held)
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
                self.load_s += max(0, loaded - r.host_paid) * unit_blocks * self.host.s_per_block
                self.host.loaded_blocks += loaded * unit_blocks
            r.host_paid = 0  # a later admission (after a preemption) pays for its own loads
            if kv.prefix_caching and not r.kv_ready:
                r.prefix_hit_tokens += start
                r.lookup_tokens += r.num_tokens
            # Past its own cached KV the request does not offer shared units again (they would be counted twice).
            r.units_seen = len(r.prefix_keys) if ((private > 0 or r.kv_ready) and r.prefix_keys) else hits
            r.computed = start
            r.prefill_due += remaining
            kv.allocate(new_blocks)
            r.blocks = held + new_blocks
            r.state = PREFILL
            self._seq += 1
            r.seq = self._seq
            if r.first_scheduled < 0:
                r.first_scheduled = self.now
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
            r.prefill_due -= r.prompt + r.generated - r.computed  # owed by this admission, never computed
        self._release(r, r.computed)
        r.computed = 0
        r.units_seen = 0
        r.kv_ready = 0  # transferred KV is gone with the blocks: this engine recomputes it
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
        r.emit_runs.append((self.now, d, d - 1))
        heapq.heappush(self.finish_heap, (r.finish_step, r.seq, r))

    def _finish(self, r: Request) -> None:
        self.running.remove(r)
        if r.prefix_keys and self.kv.prefix_caching:
            # Keys that reach past the prompt (an agent's context) cover generated tokens too: their full units
            # stay cached for the job's next call, as vLLM hashes every full block.
            self._register_units(r, r.computed)
        self._release(r, None)
        r.state = FINISHED
        r.finish_time = self.now
        self.on_finish(r)

    def reject(self, r: Request, now: float) -> None:
        r.lane = self.uid
        r.state = REJECTED
        r.finish_time = now
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

    def apply_mixed(self, chunks: Chunks, advance: bool, now: float) -> None:
        """A step with prefill chunks (and this engine's decodes, if `advance`) ended at `now`."""
        self.now = now
        if advance:
            self._dends_pending.append(now)
            self._complete_decodes(self.dstep)
            self.dstep += 1
        for r, n in chunks:
            r.computed += n
            r.prefill_done += n
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

    def apply_decode_run(self, k: int, ends: np.ndarray | list[float] | None, now: float) -> None:
        """k pure-decode steps just ran, the last ending at `now` (`ends`: their end times; None for one step)."""
        self.now = now
        if ends is None:
            self._dends_pending.append(now)
        elif isinstance(ends, list):
            self._dends_pending.extend(ends)
        else:
            if self._dends_pending:
                self.dends.append(np.array(self._dends_pending))
                self._dends_pending = []
            self.dends.append(ends)
        if ends is not None:
            # Blocks for decode steps 2..k of the run (step 1's were allocated when it was planned).
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
    def decoder_finishes(self, dstep: int) -> bool:
        """Whether some decoder produces its last token at decode step `dstep`."""
        heap = self.finish_heap
        while heap and (heap[0][2].state != DECODE or heap[0][2].finish_step != heap[0][0]
                        or heap[0][2].seq != heap[0][1]):
            heapq.heappop(heap)
        return bool(heap) and heap[0][0] <= dstep

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

    def horizon(self) -> int:
        """How many decode steps can run before the batch changes: the first completion, or the first step whose
        block allocations would not fit (that step then runs alone and preempts)."""
        self.decoder_finishes(self.dstep)  # drops stale heap entries
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

    # ---- inspection --------------------------------------------------------------------------------------------
    def kv_tokens(self, r: Request) -> int:
        """Tokens whose KV a running request has computed (decoders: through the last decode step)."""
        return r.base + self.dstep if r.state == DECODE else r.computed

    def blocks_held(self, r: Request) -> int:
        """KV blocks a running request holds (shared prefix units included), without disturbing its counters."""
        if r.state != DECODE:
            return r.blocks
        first = r.emit_runs[-1][1]
        slot = self._decode_blocks_step == self.dstep
        return r.blocks + _ceil_div(r.base + self.dstep + slot, self.B) - _ceil_div(r.base + first, self.B)

    def decode_step_ends(self) -> np.ndarray:
        if self._dends_pending:
            self.dends.append(np.array(self._dends_pending))
            self._dends_pending = []
        return np.concatenate(self.dends) if self.dends else np.zeros(0)
