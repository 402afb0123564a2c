"""The cluster's serving side: replicas behind a router, fed by an open-loop arrival process."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import simpy

from sim.serving.replica import Replica
from sim.serving.request import Request


class Fleet:
    def __init__(self, env: simpy.Environment, router) -> None:  # noqa: ANN001
        self.env = env
        self.router = router
        self.replicas: list[Replica] = []
        self.finished = 0
        self._listeners: list[Callable[[Request], None]] = []

    def add_replica(self, make: Callable[[int, Callable[[Request], None]], Replica]) -> None:
        self.replicas.append(make(len(self.replicas), self._on_finish))

    def submit(self, r: Request) -> None:
        # The simulation clock is the reference: a timeout to a trace timestamp can land an ulp off it.
        r.arrival = self.env.now
        self.router.pick(r, self.replicas).enqueue(r)

    def on_finish(self, fn: Callable[[Request], None]) -> None:
        self._listeners.append(fn)

    def _on_finish(self, r: Request) -> None:
        self.finished += 1
        finished = getattr(self.router, "finished", None)
        if finished:
            finished(r)
        if r.done is not None:
            r.done.succeed(r)
        for fn in self._listeners:
            fn(r)

    def open_loop(self, requests: Sequence[Request]):  # noqa: ANN201  (SimPy process)
        """Submit requests at their arrival times (sorted)."""
        env = self.env
        for r in requests:
            if r.arrival > env.now:
                yield env.timeout(r.arrival - env.now)
            self.submit(r)
