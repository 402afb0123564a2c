"""Global routers: which replica of a pool serves an arriving request.

A router returns a position in the pool it is given; its own bookkeeping is per position, so the same router
works for any pool (colocated replicas, or the prefill and decode pools of a disaggregated plan, whose replica
numbers do not start at 0). It sees replicas only through their methods (`cached_prefix`)."""

from __future__ import annotations

from collections.abc import Sequence

from sim.errors import FleetsimError
from sim.serving.replica import Replica
from sim.serving.request import Request


class RoundRobin:
    name = "round-robin"
    cache_aware = False

    def __init__(self) -> None:
        self._next = 0

    def pick(self, r: Request, replicas: Sequence[Replica]) -> int:
        i = self._next % len(replicas)
        self._next += 1
        return i

    def finished(self, r: Request) -> None:
        pass


class LeastOutstandingTokens:
    """The replica with the fewest prompt plus output tokens still to serve in this pool (ties: lowest position)."""

    name = "least-tokens"
    cache_aware = False

    def __init__(self) -> None:
        self.outstanding: list[int] = []
        self._charged: dict[int, tuple[int, int]] = {}  # request id -> (position, tokens charged)

    def _charge(self, r: Request, i: int) -> int:
        # What this pool will hold and produce for the request: its prompt and the tokens it generates here.
        tokens = r.prompt + r.target
        self.outstanding[i] += tokens
        self._charged[r.rid] = (i, tokens)
        return i

    def pick(self, r: Request, replicas: Sequence[Replica]) -> int:
        if not self.outstanding:
            self.outstanding = [0] * len(replicas)
        return self._charge(r, min(range(len(replicas)), key=self.outstanding.__getitem__))

    def finished(self, r: Request) -> None:
        charged = self._charged.pop(r.rid, None)
        if charged is not None:
            self.outstanding[charged[0]] -= charged[1]


class PrefixAware(LeastOutstandingTokens):
    """The replica whose prefix cache holds the longest prefix of the request; ties and misses go to the least
    loaded. Load still counts: a replica more than `imbalance` times the mean load is skipped."""

    name = "prefix-aware"
    cache_aware = True

    def __init__(self, imbalance: float = 2.0) -> None:
        super().__init__()
        self.imbalance = imbalance

    def pick(self, r: Request, replicas: Sequence[Replica]) -> int:
        if not self.outstanding:
            self.outstanding = [0] * len(replicas)
        mean = sum(self.outstanding) / len(replicas) + r.prompt + r.target
        best, best_key = 0, None
        for i, rep in enumerate(replicas):
            hits = 0
            if r.prefix_keys and self.outstanding[i] <= self.imbalance * mean:
                hits = rep.cached_prefix(r.prefix_keys, len(r.prefix_keys))
            key = (-hits, self.outstanding[i], i)
            if best_key is None or key < best_key:
                best, best_key = i, key
        return self._charge(r, best)


ROUTERS = {cls.name: cls for cls in (RoundRobin, LeastOutstandingTokens, PrefixAware)}


def make_router(name: str):  # noqa: ANN201
    try:
        return ROUTERS[name]()
    except KeyError:
        raise FleetsimError(f"router: unknown policy '{name}'; expected one of auto, {', '.join(ROUTERS)}") from None
