"""The options `run`, `replay` and `search` share, declared once (on `run`): which scenario field each sets, the
help panel it shows in, and its default, read from the default scenario so that help never drifts from it."""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable
from typing import Any

# option (parameter name) -> the scenario field it sets
FIELDS: dict[str, str] = {
    "model": "model", "gpu": "gpu", "num_gpus": "num_gpus", "node": "node", "fabric": "fabric",
    "weight_dtype": "weight_dtype", "kv_dtype": "kv_dtype",
    "tp": "tp", "pp": "pp", "tp_nodes": "tp_nodes", "ep": "ep", "attn_dp": "attn_dp", "replicas": "replicas",
    "router": "router", "seed": "seed", "moe_routing": "moe_routing", "moe_policy": "moe_policy",
    "prefill_replicas": "disagg.prefill_replicas", "prefill_tp": "disagg.prefill_tp",
    "prefill_pp": "disagg.prefill_pp", "prefill_attn_dp": "disagg.prefill_attn_dp",
    "prefill_ep": "disagg.prefill_ep", "prefill_moe_policy": "disagg.prefill_moe_policy",
    "decode_replicas": "disagg.decode_replicas", "decode_tp": "disagg.decode_tp", "decode_pp": "disagg.decode_pp",
    "decode_attn_dp": "disagg.decode_attn_dp", "decode_ep": "disagg.decode_ep",
    "decode_moe_policy": "disagg.decode_moe_policy", "prefill_gpu": "disagg.prefill_gpu",
    "decode_gpu": "disagg.decode_gpu",
    "trace": "workload.trace", "format": "workload.format", "arrival": "workload.arrival", "rate": "workload.rate",
    "cv": "workload.cv", "num_requests": "workload.num_requests", "duration": "workload.duration_s",
    "concurrency": "workload.concurrency", "input_len": "workload.input_len", "output_len": "workload.output_len",
    "start": "workload.start_s", "rate_scale": "workload.rate_scale", "sample": "workload.sample",
    "model_filter": "workload.model_filter", "max_tokens": "workload.max_tokens",
    "skip_bad_rows": "workload.skip_bad_rows",
    "engine": "engine.preset", "step_overhead": "engine.step_overhead_s", "policy": "engine.policy",
    "max_num_seqs": "engine.max_num_seqs", "max_batched_tokens": "engine.max_num_batched_tokens",
    "chunked_prefill": "engine.chunked_prefill", "prefix_caching": "engine.enable_prefix_caching",
    "block_size": "engine.block_size", "gpu_memory_utilization": "engine.gpu_memory_utilization",
    "scheduling": "engine.scheduling", "kv_offload_gb": "engine.kv_offload_gb",
    "slo_ttft": "slo.ttft_s", "slo_tpot": "slo.tpot_s", "slo_e2el": "slo.e2el_s", "slo_itl": "slo.itl_s",
    "price": "energy.gpu_usd_per_hour", "electricity_price": "energy.electricity_usd_per_kwh", "pue": "energy.pue",
    "power_cap": "energy.power_cap_w",
    "jobs": "agents.programs", "turns": "agents.turns", "tool_time": "agents.tool_time",
    "parallel_tools": "agents.parallel_tools", "kv_policy": "agents.kv_policy", "subagents": "agents.subagents",
    "subagent_turns": "agents.subagent_turns",
    "first_prompt": "agents.first_prompt", "new_tokens": "agents.new_tokens",
    "call_output_len": "agents.output_tokens",
}

PANELS: dict[str, tuple[str, ...]] = {
    "Model & hardware": ("model", "gpu", "num_gpus", "node", "fabric", "weight_dtype", "kv_dtype", "second_gpu",
                         "second_num_gpus"),
    "Plan": ("tp", "pp", "tp_nodes", "ep", "attn_dp", "replicas", "router", "moe_routing", "moe_policy",
             "prefill_replicas", "prefill_tp", "prefill_pp", "prefill_attn_dp", "prefill_ep", "prefill_moe_policy",
             "decode_replicas", "decode_tp", "decode_pp", "decode_attn_dp", "decode_ep", "decode_moe_policy",
             "prefill_gpu", "decode_gpu"),
    "Workload": ("trace", "format", "arrival", "rate", "cv", "num_requests", "concurrency", "duration", "start",
                 "rate_scale", "sample", "model_filter", "max_tokens", "skip_bad_rows", "input_len", "output_len",
                 "seed"),
    "Engine": ("engine", "step_overhead", "policy", "max_num_seqs", "max_batched_tokens", "chunked_prefill",
               "prefix_caching", "block_size", "gpu_memory_utilization", "scheduling", "kv_offload_gb"),
    "Agents": ("agents", "agent_rate", "jobs", "turns", "first_prompt", "new_tokens", "call_output_len",
               "tool_time", "parallel_tools", "subagents", "subagent_turns", "kv_policy", "agent_trace"),
    "SLOs": ("slo_ttft", "slo_tpot", "slo_e2el", "slo_itl", "goodput", "slo_jct"),
    "Energy & money": ("price", "electricity_price", "pue", "power_cap"),
    "Search space": ("tp_list", "pp_list", "dp_list", "seqs_list", "tokens_list", "all_gpus", "disagg",
                     "kv_policies", "ep_list", "moe_policies"),
    "Search": ("objective", "capacity", "attainment", "executor", "workers"),
    "Output": ("out_dir", "overwrite", "as_json", "percentile_metrics", "metric_percentiles", "compare", "top"),
}
_HIDDEN = {"show_jobs"}
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}


GOODPUT_KEYS = {"ttft": "slo_ttft", "tpot": "slo_tpot", "e2el": "slo_e2el", "itl": "slo_itl"}


def goodput_targets(items: list[str]) -> dict[str, float]:
    """vLLM's --goodput KEY:MS pairs (each item may hold several, space- or comma-separated) -> the --slo-* option
    each sets, in seconds (vllm/benchmarks/serve.py, parse_goodput)."""
    from sim.core.checks import number
    from sim.errors import FleetsimError

    out: dict[str, float] = {}
    for item in items:
        for pair in item.replace(",", " ").split():
            key, sep, value = pair.partition(":")
            if not sep or key not in GOODPUT_KEYS:
                raise FleetsimError(f"--goodput: expected KEY:MILLISECONDS with KEY one of {', '.join(GOODPUT_KEYS)}, "
                                    f"got {pair!r}")
            try:
                ms = float(value)
            except ValueError:
                ms = math.nan
            number(ms, f"--goodput {key}", low=0.0, low_open=True, what="a positive, finite number of milliseconds")
            out[GOODPUT_KEYS[key]] = ms / 1e3
    return out


def scenario_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Scenario field -> value for every option given (None: not given, the scenario's value stays)."""
    if flags.get("goodput"):
        from sim.errors import FleetsimError

        targets = goodput_targets(flags["goodput"])
        both = [name for name in targets if flags.get(name) is not None]
        if both:
            raise FleetsimError(f"--goodput and --{both[0].replace('_', '-')} both set that target; use one")
        flags = {**flags, **targets}
    out = {FIELDS[name]: value for name, value in flags.items() if name in FIELDS}
    if out.get("workload.skip_bad_rows") is False:
        out["workload.skip_bad_rows"] = None  # a flag left off keeps the scenario's setting
    if flags.get("num_requests") is not None and flags.get("duration") is None:
        out["workload.duration_s"] = math.inf  # an explicit count without a window takes them all
    agents, rate, trace = flags.get("agents"), flags.get("agent_rate"), flags.get("agent_trace")
    if agents is not None or rate is not None or trace is not None:
        out["agents.agents"], out["agents.rate"] = agents, rate
        if trace is not None:
            out["agents.trace"] = str(trace)
    return out


@functools.cache
def _defaults() -> dict[str, Any]:
    """The default scenario's sections, made once (each option's help reads one field of them)."""
    from sim.agents.spec import AgentSpec
    from sim.scenario import DisaggSpec, Scenario

    base = Scenario()
    return {"": base, "engine": base.engine, "workload": base.workload, "slo": base.slo, "energy": base.energy,
            "agents": AgentSpec(),
            "disagg": DisaggSpec()}


def _default_text(field: str) -> str | None:
    section, _, name = field.rpartition(".")
    value = getattr(_defaults()[section], name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


# Options whose default is no value of the scenario's but a behaviour: what happens when they are left off.
BEHAVIOUR_DEFAULTS = {
    "num_gpus": "replicas x tp x pp x attn-dp, or 8", "arrival": "the trace's timestamps; poisson for generated "
    "lengths", "rate": "the trace's own timing", "num_requests": "every request in the window",
    "concurrency": "none: open loop", "model_filter": "every model", "max_tokens": "no cap",
    "agents": "none: the request workload", "agent_rate": "none", "agent_trace": "none", "goodput": "the --slo-* "
    "targets", "out_dir": "no files written", "second_gpu": "none", "slo_jct": "none",
    "kv_policies": "the scenario's one", "moe_policies": "the scenario's one",
}


def decorate(fn: Callable[..., Any]) -> None:
    """Put each option of `fn` in its help panel and append the scenario's default where its help has none."""
    # Resolved once and kept: string annotations (postponed evaluation) would build fresh option objects on every
    # resolution, and these changes would be lost.
    hints = typing.get_type_hints(fn, include_extras=True)
    fn.__annotations__ = hints
    for name, hint in hints.items():
        info = next((m for m in getattr(hint, "__metadata__", ()) if hasattr(m, "rich_help_panel")), None)
        if info is None:
            continue
        if name in _PANEL_OF:
            info.rich_help_panel = _PANEL_OF[name]
        if name in FIELDS and info.help and "default" not in info.help.lower():
            text = _default_text(FIELDS[name])
            if text is not None:
                info.help = f"{info.help} (default: {text})"
        if name in BEHAVIOUR_DEFAULTS and info.help and "default" not in info.help.lower():
            info.help = f"{info.help} (default: {BEHAVIOUR_DEFAULTS[name]})"
    # Help lists the panels in the order of their first option: model and hardware first, output last.
    order = {panel: i for i, panel in enumerate(PANELS)}
    params = sorted(inspect.signature(fn).parameters.values(),
                    key=lambda p: order.get(_PANEL_OF.get(p.name, ""), -1 if p.name not in _HIDDEN else 99))
    fn.__signature__ = inspect.Signature([p.replace(annotation=hints.get(p.name, p.annotation)) for p in params])


def share(source: Callable[..., Any], target: Callable[..., Any], exclude: set[str],
          first: list[inspect.Parameter] | None = None) -> None:
    """Give `target` the options of `source` (but `exclude`) after its own parameters (and after `first`)."""
    hints = typing.get_type_hints(source, include_extras=True)
    own_hints = typing.get_type_hints(target, include_extras=True)
    own = [p.replace(annotation=own_hints[n]) for n, p in inspect.signature(target).parameters.items()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in own} | {p.name for p in first or []}
    shared = [p.replace(annotation=hints[name]) for name, p in inspect.signature(source).parameters.items()
              if name not in exclude and name not in taken]
    order = {panel: i for i, panel in enumerate(PANELS)}
    options = sorted([*own, *shared], key=lambda p: order.get(_PANEL_OF.get(p.name, ""), -1))
    params = [*(first or []), *options]
    target.__signature__ = inspect.Signature(params)
    target.__annotations__ = {p.name: p.annotation for p in params}
