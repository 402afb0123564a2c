"""Prefill/decode disaggregation (Splitwise, DistServe): a prefill pool computes each prompt and its first token,
the KV cache crosses the fabric, and a decode pool generates the rest."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import simpy

from sim.serving.fleet import Fleet, open_loop
from sim.serving.request import REJECTED, WAITING, Request


class DisaggFleet:
    def __init__(self, env: simpy.Environment, prefill: Fleet, decode: Fleet,
                 transfer_s: Callable[[Request], float]) -> None:
        self.env, self.prefill, self.decode, self.transfer_s = env, prefill, decode, transfer_s
        self.finished = 0
        self.transfers = 0
        self.transfer_busy_s = 0.0
        self._listeners: list[Callable[[Request], None]] = []
        prefill.on_finish(self._prefilled)
        decode.on_finish(self._done)

    @property
    def replicas(self) -> list:
        return self.prefill.replicas + self.decode.replicas

    def replica(self, index: int):  # noqa: ANN201
        """The replica of a request's `replica` number, in either pool."""
        pool = self.decode if index >= self.decode.first_index else self.prefill
        return pool.replica(index)

    def submit(self, r: Request) -> None:
        r.target = 1  # the prefill pool stops at the first token
        self.prefill.submit(r)

    def on_finish(self, fn: Callable[[Request], None]) -> None:
        self._listeners.append(fn)

    def open_loop(self, requests: Sequence[Request]):  # noqa: ANN201  (SimPy process)
        return open_loop(self.env, self, requests)

    def _prefilled(self, r: Request) -> None:
        if r.state == REJECTED or r.output <= 1:
            self._done(r)
        else:
            self.env.process(self._transfer(r))

    def _transfer(self, r: Request):  # noqa: ANN202  (SimPy process)
        t = self.transfer_s(r)
        self.transfers += 1
        self.transfer_busy_s += t
        yield self.env.timeout(t)
        r.state = WAITING
        r.target = r.output
        r.kv_ready = r.prompt + r.generated - 1  # every token but the last sampled one has its KV
        r.computed = 0
        r.private_blocks = 0
        self.decode.submit(r, new=False)

    def _done(self, r: Request) -> None:
        self.finished += 1
        if r.done is not None:
            r.done.succeed(r)
        for fn in self._listeners:
            fn(r)
