"""Global routers: which replica serves an arriving request."""

from __future__ import annotations

from collections.abc import Sequence

from sim.errors import FleetsimError
from sim.serving.replica import Replica
from sim.serving.request import Request


class RoundRobin:
    name = "round-robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, r: Request, replicas: Sequence[Replica]) -> Replica:
        rep = replicas[self._next % len(replicas)]
        self._next += 1
        return rep


class LeastOutstandingTokens:
    """The replica with the fewest prompt plus output tokens still to serve (ties: lowest index)."""

    name = "least-tokens"

    def __init__(self) -> None:
        self.outstanding: list[int] = []

    def pick(self, r: Request, replicas: Sequence[Replica]) -> Replica:
        if not self.outstanding:
            self.outstanding = [0] * len(replicas)
        i = min(range(len(replicas)), key=self.outstanding.__getitem__)
        self.outstanding[i] += r.prompt + r.output
        return replicas[i]

    def finished(self, r: Request) -> None:
        if self.outstanding and r.replica >= 0:
            self.outstanding[r.replica] -= r.prompt + r.output


class PrefixAware(LeastOutstandingTokens):
    """The replica whose prefix cache holds the longest prefix of the request; ties and misses go to the least
    loaded. Load still counts: a replica more than `imbalance` times the mean load is skipped."""

    name = "prefix-aware"

    def __init__(self, imbalance: float = 2.0) -> None:
        super().__init__()
        self.imbalance = imbalance

    def pick(self, r: Request, replicas: Sequence[Replica]) -> Replica:
        if not self.outstanding:
            self.outstanding = [0] * len(replicas)
        mean = sum(self.outstanding) / len(replicas) + r.prompt + r.output
        best, best_key = 0, None
        for i, rep in enumerate(replicas):
            hits = 0
            if r.prefix_keys and self.outstanding[i] <= self.imbalance * mean:
                hits = rep.kv.match(r.prefix_keys, len(r.prefix_keys))
            key = (-hits, self.outstanding[i], i)
            if best_key is None or key < best_key:
                best, best_key = i, key
        self.outstanding[best] += r.prompt + r.output
        return replicas[best]


ROUTERS = {cls.name: cls for cls in (RoundRobin, LeastOutstandingTokens, PrefixAware)}


def make_router(name: str):  # noqa: ANN201
    try:
        return ROUTERS[name]()
    except KeyError:
        raise FleetsimError(f"router: unknown policy '{name}'; expected one of auto, {', '.join(ROUTERS)}") from None
