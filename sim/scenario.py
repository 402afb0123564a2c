"""A scenario: model, cluster, plan, engine knobs, workload, SLOs and seed, as one validated object.

Loadable from TOML (top-level keys plus [engine], [workload], [slo] tables); CLI flags override single fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sim.agents.spec import AgentSpec
from sim.core.toml_card import read_toml
from sim.core.checks import integer, number
from sim.errors import FleetsimError
from sim.model.arch import ModelArch
from sim.model.catalog import load_model
from sim.model.precision import check_kv_dtype, check_weight_dtype, with_precision
from sim.parallel.plan import Plan
from sim.serving.engine_config import EngineConfig
from sim.workload.spec import WorkloadSpec


@dataclass(frozen=True, slots=True)
class SLO:
    ttft_s: float = 2.0
    tpot_s: float = 0.1
    jct_s: float | None = None  # agent jobs: p90 job completion time target (capacity mode: most agents within it)
    e2el_s: float | None = None  # a request's end-to-end latency (vLLM's goodput e2el)
    itl_s: float | None = None  # a request's longest inter-token gap: no stall longer than this

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s", "jct_s", "e2el_s", "itl_s"):
            value = getattr(self, name)
            if value is None and name in ("jct_s", "e2el_s", "itl_s"):
                continue
            number(value, f"slo.{name}", low=0.0, low_open=True, what="a positive, finite number of seconds")


@dataclass(frozen=True, slots=True)
class EnergySpec:
    """What the GPUs' power and time cost: facility overhead, a power cap, prices."""

    pue: float = 1.0  # facility power / IT power; 1.0: the servers' own draw only
    power_cap_w: float | None = None  # per GPU; slows compute-bound steps (sim/energy/power.py)
    electricity_usd_per_kwh: float = 0.13  # US commercial retail average, 2024 (EIA Electric Power Monthly, 5.6.A)
    gpu_usd_per_hour: float | None = None  # per GPU; default: the GPU card's price

    def __post_init__(self) -> None:
        number(self.pue, "energy.pue", low=1.0, what="a power usage effectiveness >= 1 (facility / IT power)")
        if self.power_cap_w is not None:
            number(self.power_cap_w, "energy.power_cap_w", low=0.0, low_open=True, what="a positive number of watts")
        number(self.electricity_usd_per_kwh, "energy.electricity_usd_per_kwh", low=0.0,
               what="a non-negative, finite $/kWh")
        if self.gpu_usd_per_hour is not None:
            number(self.gpu_usd_per_hour, "energy.gpu_usd_per_hour", low=0.0, low_open=True,
                   what="a positive, finite $/GPU-hour")


@dataclass(frozen=True, slots=True)
class DisaggSpec:
    """Prefill/decode disaggregation: two pools, each a plan of its own (replicas x TP x PP x attention-DP, EP for
    MoE models, a balancing policy under EP) on a GPU type of its own."""

    prefill_replicas: int = 1
    prefill_tp: int = 1
    prefill_pp: int = 1
    prefill_attn_dp: int = 1
    prefill_ep: int = 1
    prefill_moe_policy: str = "ep"
    decode_replicas: int = 1
    decode_tp: int = 1
    decode_pp: int = 1
    decode_attn_dp: int = 1
    decode_ep: int = 1
    decode_moe_policy: str = "ep"
    prefill_gpu: str = ""  # default: the scenario's gpu
    decode_gpu: str = ""

    def __post_init__(self) -> None:
        for pool in ("prefill", "decode"):
            for name in ("replicas", "tp", "pp", "attn_dp", "ep"):
                value = getattr(self, f"{pool}_{name}")
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise FleetsimError(f"disagg.{pool}_{name}: expected a positive integer, got {value!r}")
            for name in ("moe_policy", "gpu"):
                value = getattr(self, f"{pool}_{name}")
                if not isinstance(value, str):
                    raise FleetsimError(f"disagg.{pool}_{name}: expected a string, got {value!r}")
            self.plan(pool)  # checks ep against tp x attn_dp

    def plan(self, pool: str) -> Plan:
        """The plan of the 'prefill' or 'decode' pool."""
        get = lambda name: getattr(self, f"{pool}_{name}")  # noqa: E731
        try:
            return Plan(tp=get("tp"), pp=get("pp"), replicas=get("replicas"), ep=get("ep"), attn_dp=get("attn_dp"))
        except FleetsimError as exc:
            raise FleetsimError(f"disagg.{pool}: {exc}") from None

    @property
    def num_gpus(self) -> int:
        return self.plan("prefill").num_gpus + self.plan("decode").num_gpus

    def label(self) -> str:
        return f"P:{self.plan('prefill').label()}+D:{self.plan('decode').label()}"


@dataclass(frozen=True, slots=True)
class Scenario:
    model: str = "llama-3.1-8b"
    # Storage formats overriding the model card's (sim/model/precision.py): every weight (bf16, fp16, fp8 = W8A8,
    # int8, int4 = W4A16, mxfp4) and the KV cache (bf16, fp16, fp8); None keeps the card's.
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    gpu: str = "h100-sxm"
    num_gpus: int | None = None  # default: replicas x tp x pp, or 8 when neither is given
    replicas: int | None = None  # default: num_gpus / (tp x pp)
    tp: int = 1
    pp: int = 1
    tp_nodes: int = 0  # nodes a tensor-parallel group spans; 0 packs it into as few as fit
    ep: int = 1  # MoE: expert-parallel degree (1, or tp x attn_dp)
    # Attention data-parallel ranks per replica, each with its own scheduler and KV cache; they share one
    # expert-parallel group (ep = tp x attn_dp) or, without EP, an FFN split over all their GPUs.
    attn_dp: int = 1
    # MoE under EP: which experts tokens choose (see sim/moe/routing.py) and how loads are balanced
    # (ep, eplb:R[:hierarchical], llep[:ALPHA:M:LAMBDA], exflow; see sim/moe/balance.py).
    moe_routing: str = "uniform"
    moe_policy: str = "ep"
    node: str = "hgx-8gpu"
    fabric: str = "ib-ndr-400"
    router: str = "auto"  # auto: prefix-aware for agent jobs (their calls must find their context), else round-robin
    seed: int = 0
    engine: EngineConfig = field(default_factory=EngineConfig)
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    slo: SLO = field(default_factory=SLO)
    energy: EnergySpec = field(default_factory=EnergySpec)
    # Separate prefill and decode pools instead of colocated replicas; each pool's plan is in the spec, and the
    # top-level tp, pp, attn_dp, ep, tp_nodes, replicas and moe_policy must then stay unset.
    disagg: DisaggSpec | None = None
    agents: AgentSpec | None = None  # agent jobs (LLM calls between tool calls) instead of the request workload

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "ep", "attn_dp"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FleetsimError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("num_gpus", "replicas"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise FleetsimError(f"{name}: expected a positive integer, got {value!r}")
        integer(self.seed, "seed", low=0, high=2**63 - 1)  # numpy's generators take non-negative seeds
        for name in ("model", "gpu", "node", "fabric", "router", "moe_routing", "moe_policy"):
            value = getattr(self, name)
            if not isinstance(value, (str, Path)) or not str(value).strip():
                raise FleetsimError(f"{name}: expected a name or a path, got {value!r}")
        if self.weight_dtype is not None:
            check_weight_dtype(self.weight_dtype)
        if self.kv_dtype is not None:
            check_kv_dtype(self.kv_dtype)

    def load_model(self) -> ModelArch:
        """The scenario's model card in the scenario's storage formats."""
        return with_precision(load_model(self.model), self.weight_dtype, self.kv_dtype)

    def resolved_gpus(self) -> tuple[int, int]:
        """(num_gpus, replicas) after filling in whichever was left out."""
        per = self.tp * self.pp * self.attn_dp
        if self.num_gpus is None and self.replicas is None:
            num_gpus = 8
            if num_gpus % per:
                num_gpus = per
            return num_gpus, num_gpus // per
        if self.replicas is None:
            if self.num_gpus % per:
                raise FleetsimError(f"num_gpus ({self.num_gpus}) is not a multiple of tp x pp x attn_dp ({per})")
            return self.num_gpus, self.num_gpus // per
        if self.num_gpus is None:
            return self.replicas * per, self.replicas
        if self.replicas * per != self.num_gpus:
            raise FleetsimError(f"replicas x tp x pp x attn_dp = {self.replicas * per} but num_gpus = {self.num_gpus}")
        return self.num_gpus, self.replicas

    def with_overrides(self, **overrides: Any) -> Scenario:
        """A copy with fields replaced; keys 'engine.x', 'workload.x', 'slo.x' reach the nested sections, and a dict
        given for a section (`engine={"max_num_seqs": 64}`) replaces those of its fields."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            if key in _SECTIONS and isinstance(value, dict):
                nested.setdefault(key, {}).update(value)
            elif "." in key:
                section, name = key.split(".", 1)
                nested.setdefault(section, {})[name] = value
            else:
                top[key] = value
        for section, values in nested.items():
            current = getattr(self, section, None)
            if current is None and section in _OPTIONAL:
                current = _OPTIONAL[section]()
            if current is None:
                raise FleetsimError(f"unknown section '{section}'; expected engine, workload, slo, energy, disagg or agents")
            top[section] = _replace(current, values, section)
        return _replace(self, top, "scenario")


_OPTIONAL = {"disagg": DisaggSpec, "agents": AgentSpec}
_SECTIONS = {"engine": EngineConfig, "workload": WorkloadSpec, "slo": SLO, "energy": EnergySpec, **_OPTIONAL}


def _replace(obj: Any, values: dict[str, Any], where: str) -> Any:
    if isinstance(obj, AgentSpec):
        # Agents run as a closed loop or at an open-loop rate: setting one replaces the other.
        values = dict(values)
        if values.get("rate") is not None and "agents" not in values:
            values["agents"] = None
        if values.get("agents") is not None and "rate" not in values:
            values["rate"] = None
    names = {f.name for f in fields(obj)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise FleetsimError(f"{where}: unknown field(s) {', '.join(unknown)}; expected some of "
                            f"{', '.join(sorted(names))}")
    try:
        return dataclasses.replace(obj, **values)
    except TypeError as exc:
        raise FleetsimError(f"{where}: {exc}") from None


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    data = read_toml(path)
    try:
        for k in _SECTIONS:
            if k in data and not isinstance(data[k], dict):
                raise FleetsimError(f"{k}: expected a table ([{k}] with its fields), got {data[k]!r}")
        sections = {k: _replace(cls(), data.pop(k), k) for k, cls in _SECTIONS.items() if k in data}
        for k, v in sections.items():
            if not isinstance(v, _SECTIONS[k]):
                raise FleetsimError(f"[{k}] must be a table")
        return _replace(Scenario(), {**data, **sections}, "scenario")
    except FleetsimError as exc:
        raise FleetsimError(f"{path}: {exc}") from None
    except AttributeError:
        raise FleetsimError(f"{path}: [engine], [workload], [slo], [disagg] and [agents] must be tables") from None
