"""What one engine step does, as the scheduler decided it and the cost model prices it.

A replica's engine is `pp` pipeline micro-batches, each of `attn_dp` attention ranks (one of each without those
parallelisms). Every rank has its own scheduler, queue and KV cache, as each vLLM data-parallel engine core does;
the ranks of a micro-batch meet at every MoE or data-parallel FFN layer, and the micro-batches share the pipeline
stages. So a step is priced as: per micro-batch, the busiest rank's attention-side work plus the FFN/MoE work of
all its ranks' tokens together; the step lasts as long as the slowest micro-batch (an uneven pipeline stalls the
stages behind its heaviest micro-batch: the bubble is in that maximum).

The plan lives beside the cost model, its consumer, so that `sim.serving` (which builds plans) depends on
`sim.cost` and never the other way.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RankBatch:
    """One attention rank's share of a step."""

    chunks: list[tuple[int, int]] = field(default_factory=list)  # (new tokens, tokens already in KV) per prefill
    decodes: int = 0  # sequences that decode one token
    kv_sum: int = 0  # their KV lengths, the new token included
    logits: int = 0  # sequences that sample a token this step

    @property
    def tokens(self) -> int:
        return self.decodes + sum(c for c, _ in self.chunks)


@dataclass(slots=True)
class StepPlan:
    """micro_batches[i][r]: rank r of pipeline micro-batch i."""

    micro_batches: list[list[RankBatch]]

    @classmethod
    def single(cls, chunks: list[tuple[int, int]], decodes: int, kv_sum: int, logits: int | None = None) -> StepPlan:
        """A plan of one rank of one micro-batch (no data-parallel attention, no pipeline)."""
        if logits is None:
            logits = decodes + len(chunks)
        return cls([[RankBatch(list(chunks), decodes, kv_sum, logits)]])

    @property
    def tokens(self) -> int:
        return sum(rank.tokens for mb in self.micro_batches for rank in mb)
