"""Analytical bounds that prove a plan cannot meet the SLOs, so the search need not simulate it.

Step time only grows with the batch and with context, so no request can decode faster than the shortest prompt
alone (batch of one, shortest context), nor reach its first token sooner than that prompt's lone prefill. If even
these exceed the SLOs, every request misses them and the plan's goodput is zero.
"""

from __future__ import annotations

from sim.cost.iteration import IterationCost


def slo_bound_violation(prefill: IterationCost, decode: IterationCost, shortest_prompt: int, slo_ttft_s: float,
                        slo_tpot_s: float) -> str:
    """Why no request can meet the SLOs under these cost models (the same one when prefill and decode are
    colocated), or '' when some might."""
    tpot = decode.decode_time(1, shortest_prompt + 1)
    if tpot > slo_tpot_s:
        return f"pruned: a lone decode step takes {tpot * 1e3:.1f} ms > TPOT SLO {slo_tpot_s * 1e3:.0f} ms"
    ttft = prefill.step_time([(shortest_prompt, 0)], 0, 0, num_logits=1)
    if ttft > slo_ttft_s:
        return f"pruned: the shortest prompt's lone prefill takes {ttft:.2f} s > TTFT SLO {slo_ttft_s:g} s"
    return ""
