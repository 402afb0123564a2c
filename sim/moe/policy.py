"""Expert-parallel balancing policies by name: ep, eplb:R[:hierarchical][:K], llep[:ALPHA:M:LAMBDA], exflow.

Parsing lives apart from the balancer (sim/moe/balance.py) so that plan feasibility (sim/parallel) can read a
policy without depending on the cost model.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import FleetsimError
from sim.moe import llep

POLICIES = ("ep", "eplb:R[:hierarchical][:K]", "llep", "llep:ALPHA:M:LAMBDA", "exflow")


@dataclass(frozen=True)
class Policy:
    kind: str  # ep, eplb, llep, exflow
    redundant: int = 0
    hierarchical: bool = False
    llep: llep.LLEPConfig | None = None
    every: int = 0  # EPLB: steps between re-placements (0: placed once)

    @property
    def label(self) -> str:
        if self.kind == "eplb":
            return (f"eplb:{self.redundant}" + (":hierarchical" if self.hierarchical else "")
                    + (f":{self.every}" if self.every else ""))
        if self.kind == "llep" and self.llep != llep.LLEPConfig():
            c = self.llep
            return f"llep:{c.alpha:g}:{c.min_chunk}:{c.threshold:g}"
        return self.kind


def parse_policy(spec: str) -> Policy:
    kind, *args = str(spec).split(":")
    try:
        if kind in ("ep", "exflow") and not args:
            return Policy(kind)
        if kind == "eplb" and args and int(args[0]) >= 0:
            hierarchical = len(args) > 1 and args[1] == "hierarchical"
            rest = args[1 + hierarchical:]
            if not rest:
                return Policy("eplb", int(args[0]), hierarchical)
            if len(rest) == 1 and int(rest[0]) > 0:
                return Policy("eplb", int(args[0]), hierarchical, every=int(rest[0]))
        if kind == "llep" and len(args) in (0, 3):
            cfg = llep.LLEPConfig(float(args[0]), int(args[1]), float(args[2])) if args else llep.LLEPConfig()
            return Policy("llep", llep=cfg)
    except ValueError:
        pass
    raise FleetsimError(f"moe policy: expected one of {', '.join(POLICIES)}, got '{spec}'")
