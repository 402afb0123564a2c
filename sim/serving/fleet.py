"""The cluster's serving side: replicas behind a router, fed by an open-loop arrival process."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import simpy

from sim.serving.replica import Replica
from sim.serving.request import Request


class Fleet:
    """One pool of identical replicas behind a router. `final`: its completions are the requests' last word (a
    prefill pool's are not). Replicas are numbered from `first_index` across pools; routers see positions in the
    pool."""

    def __init__(self, env: simpy.Environment, router, first_index: int = 0, final: bool = True) -> None:  # noqa: ANN001
        self.env = env
        self.router = router
        self.replicas: list[Replica] = []
        self.finished = 0
        self.first_index = first_index
        self.final = final
        # A prefix-aware router also picks, inside a replica, the attention rank that caches the prefix.
        self.prefer_cache = getattr(router, "cache_aware", False)
        self._listeners: list[Callable[[Request], None]] = []

    def add_replica(self, make: Callable[[int, Callable[[Request], None]], Replica]) -> None:
        self.replicas.append(make(self.first_index + len(self.replicas), self._on_finish))

    def replica(self, index: int) -> Replica:
        """The replica of a request's `replica` number."""
        return self.replicas[index - self.first_index]

    def route(self, r: Request) -> Replica:
        """The router's choice for a request (counted in its load), without queuing it."""
        return self.replicas[self.router.pick(r, self.replicas)]

    def submit(self, r: Request, new: bool = True) -> None:
        if new:
            # The simulation clock is the reference: a timeout to a trace timestamp can land an ulp off it.
            r.arrival = self.env.now
        self.route(r).enqueue(r, self.prefer_cache)

    def submit_to(self, r: Request, replica: Replica) -> None:
        """Queue a request on a replica the caller chose with `route` (e.g. after waiting out a KV reload)."""
        replica.enqueue(r, self.prefer_cache)

    def on_finish(self, fn: Callable[[Request], None]) -> None:
        self._listeners.append(fn)

    def _on_finish(self, r: Request) -> None:
        self.finished += 1
        self.router.finished(r)
        if self.final and r.done is not None:
            r.done.succeed(r)
        for fn in self._listeners:
            fn(r)

    def open_loop(self, requests: Sequence[Request]):  # noqa: ANN201  (SimPy process)
        return open_loop(self.env, self, requests)


def open_loop(env: simpy.Environment, target, requests: Sequence[Request]):  # noqa: ANN001, ANN201
    """Submit requests to `target` at their arrival times (sorted)."""
    for r in requests:
        if r.arrival > env.now:
            yield env.timeout(r.arrival - env.now)
        target.submit(r)


def closed_loop(env: simpy.Environment, target, requests: Sequence[Request], limit: int):  # noqa: ANN001, ANN201
    """Submit requests to `target` in order, at most `limit` in flight: each at its arrival time or when an earlier
    one finishes, whichever is later (vLLM's benchmark client holds a semaphore of --max-concurrency the same way:
    vllm/benchmarks/serve.py). Its arrival is the moment it is sent, so TTFT counts from there, as the client's."""
    slots = simpy.Container(env, init=limit, capacity=limit)
    target.on_finish(lambda r: slots.put(1))
    for r in requests:
        if r.arrival > env.now:
            yield env.timeout(r.arrival - env.now)
        yield slots.get(1)
        target.submit(r)
