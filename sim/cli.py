"""The `fleetsim` command line: parses, calls the API, renders. Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Annotated, Any, Optional

import typer

from sim.cli_options import decorate, scenario_overrides, share
from sim.errors import FleetsimError

class _Command(typer.core.TyperCommand):
    """A command whose help lists its options under their panels' headings (model and hardware first, output last),
    as plain text: typer's rich help costs 0.1-0.2 s of CPU at every start for its markdown and traceback support."""

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        groups: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            heading = "Arguments" if param.param_type_name == "argument" else (
                getattr(param, "rich_help_panel", None) or "Options")
            groups.setdefault(heading, []).append(record)
        for heading, records in groups.items():
            with formatter.section(heading):
                formatter.write_dl(records)


class _Typer(typer.Typer):
    """Plain help (see _Command) for every command of the app."""

    def __init__(self, **kwargs: Any) -> None:
        # Help as wide as the terminal up to 120 columns (click stops at 80 unless told).
        super().__init__(rich_markup_mode=None, context_settings={"max_content_width": 120}, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


class _App(_Typer):
    """The command line: a usage error (an unknown option, a value of the wrong type) is one line on stderr and exit
    2, like every other bad input, instead of a framed panel."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from typer import _click

        command = typer.main.get_command(self)
        try:
            code = command.main(*args, standalone_mode=False, **kwargs)
        except _click.exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "fleetsim"
            err.print(f"[bold red]error:[/] {escape(exc.format_message())} (see `{escape(where)} --help`)",
                      highlight=False, soft_wrap=True, emoji=False)
            sys.exit(2)
        except _click.exceptions.ClickException as exc:
            err.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False, soft_wrap=True,
                      emoji=False)
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = _App(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
           help="fleetsim: simulate LLM serving fleets on a CPU.")
catalog_app = _Typer(add_completion=False, invoke_without_command=True,
                          help="List the shipped model and hardware cards, or show one.")
app.add_typer(catalog_app, name="catalog")
trace_app = _Typer(add_completion=False, no_args_is_help=True, help="Look into a trace before replaying it.")
app.add_typer(trace_app, name="trace")
# An option of both `run` and `search`, declared once.
MoeRoutingOption = Annotated[Optional[str], typer.Option(help="MoE expert choice: uniform, zipf:S, dirichlet:ALPHA, hot:FRACTION:NUM_HOT[:packed], measured[:PATH] (default: shipped gpt-oss-20b loads) [+affinity:P].")]


class _Console:
    """A rich Console made on first use: help and usage errors never load rich (0.04 s of every start)."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs, self._console = kwargs, None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            kwargs = dict(self._kwargs)
            if kwargs.pop("wide_when_piped", False):
                # Piped or redirected output gets room for the wide tables instead of rich's default 80 columns.
                kwargs["width"] = None if sys.stdout.isatty() else 150
            self._console = Console(**kwargs)
        return getattr(self._console, name)


def escape(text: str) -> str:
    """User text shown literally, never read as rich markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def Table(*args: Any, **kwargs: Any) -> Any:  # noqa: N802  (stands for rich's class)
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


err = _Console(stderr=True, emoji=False)  # user text such as uniform:A:B is never an emoji
out = _Console(wide_when_piped=True, emoji=False)


def _notes(notes: list[str]) -> None:
    """What reading a trace did (rows dropped, rows sorted), on stderr."""
    for note in notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def _out_folder(value: str | None) -> Path | None:
    """--out as a folder path; an empty one is refused rather than read as the current folder."""
    if value is None:
        return None
    if not value.strip():
        raise FleetsimError("--out: expected a folder path, got an empty one")
    return Path(value)


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _print_version(value: bool) -> None:
    if value:
        from sim._version import __version__

        sys.stdout.write(f"fleetsim {__version__}\n")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context,
         version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                               help="Print fleetsim's version and exit.")] = False) -> None:
    """With no command, run the shipped default scenario (same as `fleetsim run`)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(run, scenario_file=None)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if unit == "ms":
            return f"{value * 1e3:,.1f}"
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _targets(s: dict[str, Any]) -> str:
    """The goodput targets of a summary, as the table's label shows them."""
    parts = [f"TTFT<={s['slo_ttft_s']:g}s", f"TPOT<={s['slo_tpot_s']:g}s"]
    if s.get("slo_e2el_s") is not None:
        parts.append(f"E2EL<={s['slo_e2el_s']:g}s")
    if s.get("slo_itl_s") is not None:
        parts.append(f"longest gap<={s['slo_itl_s']:g}s")
    return ", ".join(parts)


def render_summary(s: dict[str, Any], title: str) -> None:
    out.print(f"[bold]{title}[/]", highlight=False, soft_wrap=True)
    lat = Table(show_edge=False)
    lat.add_column("latency (ms)")
    for col in ("mean", "std", "p50", "p90", "p99", "max"):
        lat.add_column(col, justify="right")
    rows = [("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2e", "E2E"), ("queue_delay", "queueing")]
    for name, label in rows:
        lat.add_row(label, *(_fmt(s.get(f"{name}_{k}_s"), "ms") for k in ("mean", "std", "p50", "p90", "p99", "max")))
    out.print(lat)
    if "jct_mean_s" in s:  # jobs last seconds to minutes: in seconds
        jct = Table(show_edge=False)
        jct.add_column("job completion (s)")
        for col in ("mean", "std", "p50", "p90", "p99", "max"):
            jct.add_column(col, justify="right")
        jct.add_row("JCT", *(_fmt(s.get(f"jct_{k}_s")) for k in ("mean", "std", "p50", "p90", "p99", "max")))
        out.print(jct)
    tp = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    tp.add_column(style="bold")
    tp.add_column(justify="right")
    rows = [
        ("requests (finished / rejected)", f"{s['num_finished']:,} / {s['num_rejected']:,}"),
        ("duration (s)", _fmt(s["duration_s"])),
        ("request throughput (req/s)", _fmt(s["throughput_rps"])),
        ("output token throughput (tok/s)", _fmt(s["output_tokens_per_s"])),
        ("total token throughput (tok/s)", _fmt(s["total_tokens_per_s"])),
        (f"goodput (req/s, {_targets(s)})", _fmt(s["goodput_rps"])),
        ("SLO attainment", _fmt(s["slo_attainment"])),
        ("GPU busy fraction", _fmt(s["gpu_busy_fraction"])),
        ("KV cache use (mean / peak)", f"{_fmt(s['kv_util_mean'])} / {_fmt(s['kv_util_peak'])}"),
        ("preemptions", _fmt(s["preemptions"])),
        ("prefix-cache hit rate", _fmt(s["prefix_hit_rate"])),
        *([("agent jobs (failed)", f"{s['num_jobs']:,} ({s['num_jobs_failed']})"),
           ("context tokens computed again", f"{s['reprefill_tokens']:,}"),
           ("KV pins (pinned GB x s per GPU)", f"{s['kv_pins']:,} ({s['pinned_gb_s']:,.0f})")]
          if "num_jobs" in s else []),
        *([("KV offloaded / reloaded (GB per GPU)", f"{s['kv_offloaded_gb']:,.1f} / {s['kv_reloaded_gb']:,.1f}")]
          if "kv_offloaded_gb" in s else []),
        *_moe_rows(s),
        *([("requests clipped (--max-tokens, or the model's context)", f"{s['requests_clipped']:,}")]
          if s.get("requests_clipped") and "num_jobs" not in s else []),
        ("simulated in (s)", _fmt(s["sim_wall_s"])),
    ]
    for k, v in rows:
        tp.add_row(k, v)
    out.print()
    energy_rows = [
        ("energy (kWh, facility)", _fmt(s.get("energy_kwh"))),
        ("energy per output token (J)", _fmt(s.get("joules_per_output_token"))),
        ("power per GPU, average / peak (W)",
         f"{_fmt(s.get('avg_power_per_gpu_w'))} / {_fmt(s.get('peak_power_per_gpu_w'))}"),
        ("cost ($/hour of the cluster)", _fmt(s.get("cluster_usd_per_hour"))),
        ("cost ($ per million output tokens)", _fmt(s.get("usd_per_mtok"))),
    ]
    if s.get("power_cap_w") is not None:
        energy_rows.insert(2, ("power cap per GPU (W)", _fmt(s["power_cap_w"])))
    if s.get("usd_per_job") is not None:
        energy_rows.append(("cost per job ($)", _fmt(s["usd_per_job"])))
    for row in energy_rows:
        if "energy_kwh" in s:
            tp.add_row(*row)
    out.print(tp)


def _moe_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """Expert parallelism over the run, per pool that uses it (a disaggregated plan's keys carry the pool's name)."""
    rows = []
    for prefix in ("", "prefill_", "decode_"):
        if f"{prefix}moe_imbalance" not in s:
            continue
        pool = f"{prefix[:-1]} pool, " if prefix else ""
        g = lambda k: s[f"{prefix}{k}"]  # noqa: E731
        rows += [(f"MoE imbalance, busiest GPU / mean ({pool}{g('moe_policy')}: before -> after)",
                  f"{_fmt(g('moe_imbalance_before'))} -> {_fmt(g('moe_imbalance'))}"),
                 (f"MoE all-to-all per token, all layers ({pool}MB)", _fmt(g("moe_a2a_bytes_per_token") / 1e6)),
                 (f"MoE share of busy time ({pool}experts + all-to-all)", _fmt(g("moe_time_share")))]
        if f"{prefix}moe_rebalances" in s:
            rows.append((f"EPLB re-placements ({pool}GB copied)",
                         f"{g('moe_rebalances'):,} ({g('moe_rebalance_gb'):,.1f})"))
    return rows


class _Progress:
    """A progress bar on stderr that appears once work has taken more than `delay_s` seconds, on a terminal only."""

    def __init__(self, label: str, delay_s: float = 2.0, enabled: bool = True) -> None:
        self.label, self.delay_s, self.enabled = label, delay_s, enabled and sys.stderr.isatty()
        self.start = time.perf_counter()
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total == 0:
            return
        if self.bar is None:
            if time.perf_counter() - self.start < self.delay_s:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bar = Progress(self.label, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def run(
    scenario_file: Annotated[Optional[Path], typer.Argument(help="Scenario TOML; flags override its fields.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model card name or alias, or a path to a card or HF config.json.")] = None,
    gpu: Annotated[Optional[str], typer.Option(help="GPU card name or alias (see `fleetsim catalog`), or a path to a card file.")] = None,
    num_gpus: Annotated[Optional[int], typer.Option(help="GPUs in the cluster.")] = None,
    node: Annotated[Optional[str], typer.Option(help="Node card (GPUs per scale-up domain), e.g. dgx-h100, or a path to a card file.")] = None,
    fabric: Annotated[Optional[str], typer.Option(help="Scale-out fabric card, e.g. ib-ndr-400, or a path to a card file.")] = None,
    tp: Annotated[Optional[int], typer.Option(help="Tensor-parallel degree per replica.")] = None,
    pp: Annotated[Optional[int], typer.Option(help="Pipeline-parallel stages per replica.")] = None,
    tp_nodes: Annotated[Optional[int], typer.Option(help="Spread each TP group over this many nodes (default: packed).")] = None,
    ep: Annotated[Optional[int], typer.Option(help="MoE: expert-parallel degree (1, or tp x attn-dp).")] = None,
    attn_dp: Annotated[Optional[int], typer.Option(help="Attention data-parallel ranks per replica, each its own engine (with --ep for MoE; else the FFN splits over all their GPUs).")] = None,
    replicas: Annotated[Optional[int], typer.Option(help="Data-parallel replicas (default: num_gpus / (tp x pp)).")] = None,
    router: Annotated[Optional[str], typer.Option(help="round-robin, least-tokens or prefix-aware (default: prefix-aware for agent jobs, else round-robin).")] = None,
    moe_routing: MoeRoutingOption = None,
    moe_policy: Annotated[Optional[str], typer.Option(help="MoE balancing under EP: ep, eplb:R[:hierarchical][:K] (re-placed every K steps), llep[:ALPHA:M:LAMBDA], exflow.")] = None,
    prefill_replicas: Annotated[Optional[int], typer.Option(help="Disaggregation: replicas of the prefill pool.")] = None,
    prefill_tp: Annotated[Optional[int], typer.Option(help="Disaggregation: TP of each prefill replica.")] = None,
    prefill_pp: Annotated[Optional[int], typer.Option(help="Disaggregation: PP stages of each prefill replica.")] = None,
    prefill_attn_dp: Annotated[Optional[int], typer.Option(help="Disaggregation: attention data-parallel ranks of each prefill replica.")] = None,
    prefill_ep: Annotated[Optional[int], typer.Option(help="Disaggregation, MoE: EP degree of the prefill pool (1, or its tp x attn-dp).")] = None,
    prefill_moe_policy: Annotated[Optional[str], typer.Option(help="Disaggregation, MoE: balancing policy of the prefill pool (as --moe-policy).")] = None,
    decode_replicas: Annotated[Optional[int], typer.Option(help="Disaggregation: replicas of the decode pool.")] = None,
    decode_tp: Annotated[Optional[int], typer.Option(help="Disaggregation: TP of each decode replica.")] = None,
    decode_pp: Annotated[Optional[int], typer.Option(help="Disaggregation: PP stages of each decode replica.")] = None,
    decode_attn_dp: Annotated[Optional[int], typer.Option(help="Disaggregation: attention data-parallel ranks of each decode replica.")] = None,
    decode_ep: Annotated[Optional[int], typer.Option(help="Disaggregation, MoE: EP degree of the decode pool (1, or its tp x attn-dp).")] = None,
    decode_moe_policy: Annotated[Optional[str], typer.Option(help="Disaggregation, MoE: balancing policy of the decode pool (as --moe-policy).")] = None,
    prefill_gpu: Annotated[Optional[str], typer.Option(help="Disaggregation: GPU of the prefill pool (default --gpu).")] = None,
    decode_gpu: Annotated[Optional[str], typer.Option(help="Disaggregation: GPU of the decode pool (default --gpu).")] = None,
    trace: Annotated[Optional[str], typer.Option(help="Shipped trace (azure-conv, azure-code, mooncake-conv, vllm-bench-example) or a path.")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="Trace format: auto (sniffed), azure, burstgpt, mooncake, splitwise, vidur, vllm-bench, openai.")] = None,
    arrival: Annotated[Optional[str], typer.Option(help="trace (replay timestamps), poisson or gamma.")] = None,
    rate: Annotated[Optional[float], typer.Option(help="Arrival rate in req/s (rescales a replayed trace).")] = None,
    cv: Annotated[Optional[float], typer.Option(help="Gamma arrivals: coefficient of variation (burstiness).")] = None,
    num_requests: Annotated[Optional[int], typer.Option(help="At most this many requests.")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Closed loop: at most N requests in flight, each sent when a slot frees (as `vllm bench serve --max-concurrency`); with --rate, not before its arrival.")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Window of arrivals in seconds of simulated time (after --rate or --rate-scale). Default: 600 for a shipped trace or generated traffic, none with --num-requests; a trace file of yours replays whole.")] = None,
    start: Annotated[Optional[float], typer.Option(help="Replayed trace: skip the requests of its first SECONDS (the window starts there).")] = None,
    rate_scale: Annotated[Optional[float], typer.Option(help="Replayed trace: compress inter-arrival gaps by K (K x the rate; < 1 stretches).")] = None,
    sample: Annotated[Optional[float], typer.Option(help="Replayed trace: keep this fraction of its requests, at random (seeded).")] = None,
    model_filter: Annotated[Optional[str], typer.Option(help="Replayed trace: keep the requests of this model (traces with a model column).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Clip each request's prompt + output to this many tokens (replayed or generated; the clipped rows are counted).")] = None,
    skip_bad_rows: Annotated[bool, typer.Option("--skip-bad-rows", help="Skip malformed trace rows (counted, a sample shown) instead of stopping.")] = False,
    compare: Annotated[bool, typer.Option("--compare", help="Trace with measured latencies: report predicted vs measured per metric and a per-request scatter.")] = False,
    input_len: Annotated[Optional[str], typer.Option(help="Generated prompts: fixed:N, uniform:LOW:HIGH, lognormal:MEDIAN:SIGMA, empirical.")] = None,
    output_len: Annotated[Optional[str], typer.Option(help="Generated outputs, same forms as --input-len.")] = None,
    weight_dtype: Annotated[Optional[str], typer.Option(help="Store every weight in bf16, fp16, fp8 (W8A8), int8, int4 (W4A16) or mxfp4 (default: the model card's).")] = None,
    kv_dtype: Annotated[Optional[str], typer.Option(help="KV cache format: bf16, fp16 or fp8 (default: the model card's).")] = None,
    engine: Annotated[Optional[str], typer.Option(help="Engine preset: vllm-v1 (default) or vllm-v0; sets the scheduler's and the step cost's rules (see README).")] = None,
    step_overhead: Annotated[Optional[float], typer.Option(help="CPU seconds per engine step (default: the preset's, 0.002).")] = None,
    policy: Annotated[Optional[str], typer.Option(help="Batching: continuous or static.")] = None,
    max_num_seqs: Annotated[Optional[int], typer.Option(help="Most sequences in a batch.")] = None,
    max_batched_tokens: Annotated[Optional[int], typer.Option(help="Token budget per step (chunk size).")] = None,
    chunked_prefill: Annotated[Optional[bool], typer.Option("--chunked-prefill/--no-chunked-prefill")] = None,
    prefix_caching: Annotated[Optional[bool], typer.Option("--prefix-caching/--no-prefix-caching")] = None,
    block_size: Annotated[Optional[int], typer.Option(help="KV block size in tokens.")] = None,
    gpu_memory_utilization: Annotated[Optional[float], typer.Option(help="Fraction of GPU memory the engine may use.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of every random stream.")] = None,
    agents: Annotated[Optional[int], typer.Option(help="Agent jobs, closed loop: this many agents running jobs back to back.")] = None,
    agent_rate: Annotated[Optional[float], typer.Option(help="Agent jobs, open loop: jobs per second.")] = None,
    jobs: Annotated[Optional[int], typer.Option(help="Agent jobs in the run.")] = None,
    turns: Annotated[Optional[int], typer.Option(help="LLM calls per agent job.")] = None,
    first_prompt: Annotated[Optional[str], typer.Option(help="Agent jobs: tokens of a job's first prompt (fixed:N, uniform:LOW:HIGH, lognormal:MEDIAN:SIGMA).")] = None,
    new_tokens: Annotated[Optional[str], typer.Option(help="Agent jobs: tokens each later call adds to the context (a tool result, a message), same forms.")] = None,
    call_output_len: Annotated[Optional[str], typer.Option(help="Agent jobs: output tokens of each call, same forms.")] = None,
    tool_time: Annotated[Optional[str], typer.Option(help="Tool call seconds: fixed:S, uniform:LOW:HIGH, lognormal:MEDIAN:SIGMA.")] = None,
    parallel_tools: Annotated[Optional[int], typer.Option(help="Parallel branches per tool call (the job waits for the slowest).")] = None,
    subagents: Annotated[Optional[int], typer.Option(help="Sub-agents each job spawns after its first call and waits for, each its own context.")] = None,
    subagent_turns: Annotated[Optional[int], typer.Option(help="LLM calls of each sub-agent.")] = None,
    kv_policy: Annotated[Optional[str], typer.Option(help="A paused job's KV: evict (vLLM), pin:SECONDS, continuum, offload or none.")] = None,
    scheduling: Annotated[Optional[str], typer.Option(help="Queue order: fcfs (requests) or program (agent jobs first come, first served).")] = None,
    kv_offload_gb: Annotated[Optional[float], typer.Option(help="Host memory per GPU for offloaded KV (--kv-policy offload); default half the node's.")] = None,
    agent_trace: Annotated[Optional[Path], typer.Option(help="Replay agent jobs from a WEKA session file or folder (see `fleetsim replay`).")] = None,
    slo_ttft: Annotated[Optional[float], typer.Option(help="TTFT target in seconds (goodput).")] = None,
    slo_tpot: Annotated[Optional[float], typer.Option(help="TPOT target in seconds (goodput).")] = None,
    slo_e2el: Annotated[Optional[float], typer.Option(help="End-to-end latency target in seconds (goodput; default: none).")] = None,
    slo_itl: Annotated[Optional[float], typer.Option(help="Longest inter-token gap a request may have, in seconds (goodput; default: none).")] = None,
    goodput: Annotated[Optional[list[str]], typer.Option(help="As vllm bench serve: targets in ms, e.g. --goodput ttft:500 --goodput 'tpot:50 e2el:20000' (ttft, tpot, e2el, itl), instead of the --slo-* flags.")] = None,
    price: Annotated[Optional[float], typer.Option(help="GPU price in $/GPU-hour (default: the GPU card's).")] = None,
    electricity_price: Annotated[Optional[float], typer.Option(help="Electricity in $/kWh; 0 where the GPU price includes power, as a cloud's does.")] = None,
    pue: Annotated[Optional[float], typer.Option(help="Power usage effectiveness: facility power over IT power (>= 1; 1 counts the servers only).")] = None,
    power_cap: Annotated[Optional[float], typer.Option(help="Cap each GPU's power at this many watts: compute-bound steps slow down (default: none).")] = None,
    out_dir: Annotated[Optional[str], typer.Option("--out", metavar="DIR", help="Write requests.parquet, kv_timeline.parquet (KV use and power per replica over time), summary.json and report.html (figures; plotly.min.js beside it) here (a new or empty folder).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --out: replace an earlier run's outputs in that folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object on stdout, with vLLM's benchmark result keys (median_ttft_ms, p99_itl_ms, request_throughput, ...) beside ours.")] = False,
    percentile_metrics: Annotated[str, typer.Option(help="As vllm bench serve: the metrics (ttft, tpot, itl, e2el) reported under vLLM's keys.")] = "ttft,tpot,itl",
    metric_percentiles: Annotated[str, typer.Option(help="As vllm bench serve: the percentiles reported under vLLM's keys, e.g. 25,50,99.")] = "99",
    show_jobs: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Simulate one model served on a GPU cluster and print its latency and throughput summary."""
    flags = dict(locals())
    import sim
    from sim.metrics.export import check_output_folder, clean_json

    from sim.metrics.vllm_keys import parse_metrics, parse_percentiles, vllm_result

    progress = _Progress("simulating", enabled=not as_json)
    try:
        overrides = scenario_overrides(flags)
        metrics, percentiles = parse_metrics(percentile_metrics), parse_percentiles(metric_percentiles)
        out_dir = _out_folder(out_dir)
        if out_dir is not None:
            check_output_folder(out_dir, overwrite)  # before the work, not after it
        base = sim.load_scenario(scenario_file) if scenario_file else sim.Scenario()
        scenario = base.with_overrides(**overrides)
        if agent_trace is not None and agents is None and agent_rate is None:
            # Replay every session at once unless told how many agents run them.
            scenario = dataclasses.replace(scenario, agents=dataclasses.replace(scenario.agents, agents=None))
        result = sim.run(scenario, progress=progress if progress.enabled else None)
        tables, pages = {}, {}
        if compare:
            from sim.report.compare import errors, paired, scatter_html

            if result.trace is None:
                raise FleetsimError("--compare: needs a request trace with measured latencies (not agent jobs or "
                                    "generated traffic)")
            pairs = paired(result.requests, result.trace)
            tables = {"compare": errors(pairs), "compare_requests": pairs}
            pages = {"compare": scatter_html(pairs, f"predicted vs measured: {scenario.workload.trace}")}
            if out_dir is None:  # the default folder of a comparison: its latest run replaces the last one
                out_dir, overwrite = Path("fleetsim-replay") / Path(str(scenario.workload.trace)).stem, True
        if out_dir is not None:
            written = result.write(out_dir, tables, pages, overwrite=overwrite)
    except FleetsimError as exc:
        progress.close()
        fail(str(exc))
        return
    progress.close()
    _notes(result.info.get("trace_notes", []))
    vllm = vllm_result(result.requests, result.itl, result.summary, metrics, percentiles)
    if as_json:
        doc = {**result.summary, **vllm}
        if compare:
            doc["compare"] = tables["compare"].to_dicts()
        sys.stdout.write(json.dumps(clean_json(doc)) + "\n")
        return
    info = result.info
    if scenario.disagg is not None:
        layout = f"disaggregated {scenario.disagg.label()}"
    else:
        layout = f"{info['replicas']} replica(s) of TP{scenario.tp}" + (f" PP{scenario.pp}" if scenario.pp > 1 else "")
        layout += (f" DP-attention{scenario.attn_dp}" if scenario.attn_dp > 1 else "") + (
            f" EP{scenario.ep}" if scenario.ep > 1 else "")
    work = scenario.workload.describe()
    if scenario.agents is not None:
        a = scenario.agents
        if a.trace:
            work = f"agent trace {a.trace} ({result.summary['num_jobs']} sessions, KV {a.kv_policy})"
        else:
            loop = f"{a.agents} agents (closed loop)" if a.agents is not None else f"{a.rate:g} jobs/s (open loop)"
            work = f"{a.programs} agent jobs x {a.turns} calls, {loop}, tools {a.tool_time}, KV {a.kv_policy}"
    title = (f"{info['model']} ({info['precision']}) on {info['num_gpus']}x {info['gpu']}, {info['engine']}: {layout}; "
             f"{work}")
    render_summary(result.summary, title)
    if show_jobs and result.jobs is not None and result.jobs.height:
        t = Table(title="\njobs", title_justify="left", show_edge=False)
        for col in ("session", "calls", "JCT s", "tool s", "context tokens", "recomputed", "failed"):
            t.add_column(col, justify="left" if col == "session" else "right")
        for j in result.jobs.iter_rows(named=True):
            t.add_row(str(j.get("session", j["program"])), f"{j['turns']:,}", f"{j['jct_s']:,.1f}",
                      f"{j['tool_s']:,.1f}", f"{j['final_context_tokens']:,}", f"{j['reprefill_tokens']:,}",
                      "yes" if j["failed"] else "")
        out.print(t)
        if result.summary.get("requests_clipped"):
            out.print(f"{result.summary['requests_clipped']:,} requests were longer than the model's context and "
                      f"were clipped to it", highlight=False)
    if compare:
        render_compare(tables["compare"])
    for pool, sources in info.get("kernel_sources", {}).items():
        where = "" if pool == "replicas" else f" ({pool} pool)"
        parts = [f"GEMMs: {sources['gemm']}", f"attention: {sources['attention']}",
                 f"all-reduce: {sources['allreduce']}", f"elementwise: {sources['elementwise']}"]
        if sources["moe_experts"] != "none":
            parts.insert(2, f"MoE experts: {sources['moe_experts']}")
        if sources.get("alltoall", "none") != "none":
            parts.insert(-1, f"all-to-all: {sources['alltoall']}")
        if sources.get("gather_scatter", "none") != "none":
            parts.insert(-1, f"data-parallel attention's gather/scatter: {sources['gather_scatter']}")
        out.print(f"\n[dim]kernels costed by{where}: {escape('; '.join(parts))}[/]", highlight=False, soft_wrap=True)
    if out_dir is not None:
        out.print(f"\nwrote {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True)


def render_compare(errs) -> None:  # noqa: ANN001
    t = Table(title="\npredicted vs measured", title_justify="left", show_edge=False)
    for col in ("metric", "statistic", "measured ms", "predicted ms", "error", "requests"):
        t.add_column(col, justify="left" if col in ("metric", "statistic") else "right")
    for r in errs.iter_rows(named=True):
        err_txt = "-" if r["error"] is None else f"{r['error'] * 100:+.1f}%"
        t.add_row(r["metric"].upper(), r["statistic"], f"{r['measured_s'] * 1e3:,.1f}",
                  f"{r['predicted_s'] * 1e3:,.1f}", err_txt, f"{r['requests']:,}")
    out.print(t)


def _str_list(text: str | None) -> tuple[str, ...] | None:
    return tuple(v for v in text.split(",") if v) if text else None


def _int_list(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise FleetsimError(f"{flag}: expected comma-separated integers, got '{text}'") from None
    return values


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's or `kill`'s) ends a search as Ctrl-C does: workers stopped, finished results kept,
    exit 130."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


SHOW_SKIPPED = 12  # reasons printed for plans not simulated; the table file has them all


def render_search(result, top: int) -> None:  # noqa: ANN001
    t = result.table
    ok = t.filter(t["status"] == "ok")
    v = result.verdict
    if v["status"] == "no_plan_meets_slo":
        out.print(f"[bold red]no plan meets the SLOs[/] ({ok.height} simulated); the closest:", highlight=False)
        for c in v["closest"]:
            out.print(escape(f"  {c['plan']} (seqs {c['max_num_seqs']}, chunk {c['max_num_batched_tokens']}, "
                             f"{c['num_gpus']} GPUs): {c['misses']}"), highlight=False, soft_wrap=True)
        if v["advice"]:
            out.print("what would help: " + escape("; ".join(v["advice"])), highlight=False, soft_wrap=True)
        out.print("")
    table = Table(title=f"plans ranked by {result.objective}", title_justify="left", show_edge=False)
    cols = [("rank", "#"), ("plan", "plan"), ("num_gpus", "GPUs"), ("max_num_seqs", "seqs"),
            ("max_num_batched_tokens", "chunk"), ("meets_slo", "SLOs"),
            ("goodput_per_gpu", "good/GPU"), ("output_tokens_per_s_per_gpu", "tok/s/GPU"),
            ("ttft_p90_s", "TTFT90 ms"), ("tpot_p90_s", "TPOT90 ms"), ("hourly_usd", "$/h"),
            ("cost_per_mtok_usd", "$/Mtok"), ("joules_per_output_token", "J/tok"), ("pareto", "Pareto")]
    if "capacity_rps" in t.columns:
        cols.insert(6, ("capacity_rps", "capacity req/s"))
    if "capacity_agents" in t.columns:
        cols.insert(6, ("capacity_agents", "max agents"))
    if "jct_mean_s" in t.columns and t["jct_mean_s"].drop_nulls().len():
        cols.insert(6, ("jct_mean_s", "JCT s"))
    for _, label in cols:
        table.add_column(label, justify="left" if label in ("plan",) else "right", no_wrap=label == "plan")
    for row in ok.head(top).iter_rows(named=True):
        cells = []
        for key, label in cols:
            v_ = row.get(key)
            if label.endswith(" ms") and v_ is not None:
                cells.append(f"{v_ * 1e3:,.1f}")
            elif key in ("pareto", "meets_slo"):
                cells.append(("*" if key == "pareto" else "yes") if v_ else ("" if key == "pareto" else "no"))
            elif isinstance(v_, float) and v_ == float("inf"):
                cells.append("-")
            else:
                cells.append(_fmt(v_))
        table.add_row(*cells)
    out.print(table)
    out.print(escape(f"order: {v['order']}"), style="dim", highlight=False, soft_wrap=True)
    skipped = t.filter(t["status"] != "ok")
    if ok.height > top:
        out.print(f"... and {ok.height - top} more simulated plans")
    if skipped.height:
        out.print(f"\n{skipped.height} plan(s) not simulated (the first reason per plan, alike reasons once):")
        plans_by_reason: dict[tuple[str, str], list[str]] = {}
        for r in skipped.iter_rows(named=True):
            names = plans_by_reason.setdefault((r["status"], r["reason"]), [])
            if r["plan"] not in names:
                names.append(r["plan"])
        shown = sorted(plans_by_reason.items())
        for (status, reason), names in shown[:SHOW_SKIPPED]:
            which = f" ({len(names)} plans: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''})" \
                if len(names) > 1 else ""
            out.print(escape(f"  [{status}] {reason}{which}"), highlight=False, soft_wrap=True)
        if len(shown) > SHOW_SKIPPED:
            out.print(f"  ... and {len(shown) - SHOW_SKIPPED} more reasons (plans.parquet has every plan's reason)",
                      highlight=False)
    out.print(f"\nsimulated {result.simulated} plan(s), reused {result.reused} from the store, "
              f"in {result.wall_s:.1f} s", highlight=False)


def search(
    scenario_file: Annotated[Optional[Path], typer.Argument(help="Scenario TOML; flags override its fields.")] = None,
    objective: Annotated[str, typer.Option(help="goodput (offered load served within the SLOs, per GPU used), cost (cheapest $ per million good output tokens, GPU hours and electricity, then $/hour), energy (fewest joules per output token), gpus (fewest GPUs meeting the SLOs), throughput (output tokens/s per GPU) or jct (agent jobs). Plans meeting the SLOs always rank first.")] = "goodput",
    all_gpus: Annotated[bool, typer.Option("--all-gpus", help="Only plans that use every one of --num-gpus (default: it is a budget, and plans with fewer replicas are searched too).")] = False,
    tp_list: Annotated[Optional[str], typer.Option("--tp", help="TP degrees to try, e.g. 2,4,8 (default: powers of two).")] = None,
    pp_list: Annotated[Optional[str], typer.Option("--pp", help="PP degrees to try (default: powers of two dividing the layers).")] = None,
    dp_list: Annotated[Optional[str], typer.Option("--attn-dp", help="Data-parallel attention ranks to try (default: powers of two; 1: none).")] = None,
    seqs_list: Annotated[str, typer.Option("--max-num-seqs", help="max_num_seqs values to try.")] = "128,256",
    tokens_list: Annotated[str, typer.Option("--max-batched-tokens", help="Token budgets to try.")] = "2048,8192",
    disagg: Annotated[bool, typer.Option("--disagg", help="Also try prefill/decode pools of every TP and ratio.")] = False,
    kv_policies: Annotated[Optional[str], typer.Option(help="Agent jobs: KV retention policies to sweep, e.g. evict,pin:30,continuum,offload.")] = None,
    ep_list: Annotated[Optional[str], typer.Option("--ep", help="MoE: expert-parallel degrees to keep, e.g. 1,8 (1: experts split by TP; default: all).")] = None,
    moe_policies: Annotated[Optional[str], typer.Option(help="MoE: balancing policies to try on every EP plan, e.g. ep,eplb:8,llep.")] = None,
    slo_jct: Annotated[Optional[float], typer.Option(help="Agent jobs: p90 JCT target (capacity mode: most agents within it).")] = None,
    second_gpu: Annotated[Optional[str], typer.Option(help="A second GPU type: plans put prefill on one type, decode on the other.")] = None,
    second_num_gpus: Annotated[int, typer.Option(help="GPUs of the second type.")] = 0,
    capacity: Annotated[bool, typer.Option("--capacity", help="Find each plan's highest sustainable rate.")] = False,
    attainment: Annotated[float, typer.Option(help="Capacity mode: SLO attainment to sustain.")] = 0.9,
    price: Annotated[Optional[float], typer.Option(help="GPU price in $/GPU-hour (default: the GPU card's).")] = None,
    executor: Annotated[str, typer.Option(help="local (processes on this machine) or ray.")] = "local",
    workers: Annotated[Optional[int], typer.Option(help="Parallel simulations (default: all cores).")] = None,
    out_dir: Annotated[Optional[str], typer.Option("--out", metavar="DIR", help="Results store and outputs (default: fleetsim-search/<hash>); rerunning resumes.")] = None,
    top: Annotated[int, typer.Option(help="Rows of the ranked table to print.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON on stdout: status, order, winner, runner_up, explanation, closest, advice and every plan.")] = False,
    **flags: Any,
) -> None:
    """Search the execution plans (DP x TP x PP and engine knobs) for the best one under the SLOs."""
    import sim
    from sim.metrics.export import clean_json
    from sim.planner import SearchSpace
    from sim.planner import search as run_search
    from sim.planner.runner import SearchInterrupted, candidate_from_row, scenario_for
    from sim.core.budget import check_workers
    from sim.planner.store import scenario_key

    progress = _Progress("simulating plans", delay_s=0.5, enabled=not as_json)
    try:
        overrides = {**scenario_overrides(flags), "slo.jct_s": slo_jct}
        out_dir = _out_folder(out_dir)
        base = sim.load_scenario(scenario_file) if scenario_file else sim.Scenario()
        base = base.with_overrides(**overrides)
        space = SearchSpace(tp=_int_list(tp_list, "--tp"), pp=_int_list(pp_list, "--pp"),
                            attn_dp=_int_list(dp_list, "--attn-dp"),
                            max_num_seqs=_int_list(seqs_list, "--max-num-seqs"),
                            max_num_batched_tokens=_int_list(tokens_list, "--max-batched-tokens"), disagg=disagg,
                            second_gpu=second_gpu, second_num_gpus=second_num_gpus,
                            kv_policies=_str_list(kv_policies), ep=_int_list(ep_list, "--ep"),
                            moe_policies=_str_list(moe_policies), all_gpus=all_gpus)
        # The objective only re-ranks: searches that differ in it share one store and simulate nothing twice.
        where = out_dir or Path("fleetsim-search") / scenario_key(base, {"space": repr(space),
                                                                         "capacity": capacity})[:12]
        workers, note = check_workers(workers)
        if note:
            _notes([note])
        with _terminate_as_interrupt():
            result = run_search(base, space=space, objective=objective, executor=executor, workers=workers,
                                out_dir=where, capacity=capacity, attainment=attainment, price_per_gpu_hour=price,
                                progress=progress, on_wait=lambda: err.print(
                                    escape(f"another search is writing to {where}; waiting for it to finish (its "
                                           f"results will be reused)"), highlight=False, soft_wrap=True))
    except FleetsimError as exc:
        progress.close()
        fail(str(exc))
        return
    except (KeyboardInterrupt, SearchInterrupted) as exc:
        progress.close()
        msg = str(exc) if isinstance(exc, SearchInterrupted) else (
            f"search interrupted; finished results are kept in {where}; run the same command again to resume")
        err.print(f"[bold yellow]interrupted:[/] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    progress.close()
    if as_json:
        doc = {**result.verdict, "objective": objective, "plans": result.table.to_dicts()}
        sys.stdout.write(json.dumps(clean_json(doc)) + "\n")
        return
    render_search(result, top)
    win = result.winner
    if result.status == "no_feasible_plan":
        out.print("\n[bold red]no plan can serve this workload on this cluster[/] (reasons above)")
    elif win is None:
        out.print("\n[bold red]no winner: no plan meets the SLOs[/] (the closest are listed first, above)")
    else:
        out.print(f"\n[bold]winner:[/] {win['plan']} on {win['num_gpus']} GPU(s) with max_num_seqs="
                  f"{win['max_num_seqs']}, max_num_batched_tokens={win['max_num_batched_tokens']}", highlight=False)
        out.print(escape(f"why: {result.verdict['explanation']}"), highlight=False, soft_wrap=True)
        win_summary = sim.run(scenario_for(base, candidate_from_row(win), win["num_gpus"])).summary
        render_summary(win_summary, "winner's full summary")
    out.print(f"\nreport: {where / 'report.html'}; every plan: {where / 'plans.parquet'} (and .csv)", highlight=False,
              soft_wrap=True)


# Options of `run` that `search` does not take: the plan and knobs it varies (it has list forms of them), and run's
# own output.
RUN_ONLY = {"scenario_file", "tp", "pp", "tp_nodes", "ep", "attn_dp", "replicas", "max_num_seqs", "max_batched_tokens",
            "prefill_replicas", "prefill_tp", "prefill_pp", "prefill_attn_dp", "prefill_ep", "prefill_moe_policy",
            "decode_replicas", "decode_tp", "decode_pp", "decode_attn_dp", "decode_ep", "decode_moe_policy",
            "prefill_gpu", "decode_gpu", "compare", "out_dir", "overwrite", "as_json", "show_jobs",
            "percentile_metrics", "metric_percentiles"}
decorate(run)
share(run, search, exclude=RUN_ONLY)
decorate(search)
app.command()(search)


def replay(trace_file: Path, **flags: Any) -> None:
    """Replay a production trace against a plan: request logs (Azure, BurstGPT, Mooncake, Splitwise/Vidur, vLLM
    benchmark results, OpenAI-style logs) as timed requests, agent traces as jobs of calls and tool pauses. Every
    `fleetsim run` flag applies; --compare reports predicted vs measured latencies where the trace has them."""
    from sim.workload.traces import resolve

    try:
        _, fmt = resolve(trace_file, flags.get("format") or "auto")
    except FleetsimError as exc:
        fail(str(exc))
        return
    if fmt == "agent":
        for flag in ("compare", "skip_bad_rows"):
            if flags.get(flag):
                fail(f"--{flag.replace('_', '-')}: applies to request traces, and {trace_file} is an agent trace")
                return
        flags.update(agent_trace=trace_file, format=None)
    else:
        flags["trace"] = str(trace_file)
        if flags.get("duration") is None and flags.get("num_requests") is None:
            flags["duration"] = float("inf")  # the whole trace unless a window is asked for
    run(scenario_file=None, **flags, show_jobs=not flags.get("as_json"))


def _replay_signature() -> None:
    """`replay` takes the trace as its argument and every option of `run` (one definition of each flag)."""
    import inspect
    import typing

    hints = typing.get_type_hints(run, include_extras=True)
    shared = [p.replace(annotation=hints[name]) for name, p in inspect.signature(run).parameters.items()
              if name not in ("scenario_file", "trace", "agent_trace", "show_jobs")]
    arg = inspect.Parameter("trace_file", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                            annotation=Annotated[Path, typer.Argument(
                                help="The trace file (or a folder of agent sessions); its format is sniffed from the "
                                     "content unless --format is given.")])
    replay.__signature__ = inspect.Signature([arg, *shared])
    replay.__annotations__ = {p.name: p.annotation for p in (arg, *shared)}


_replay_signature()
app.command()(replay)


@trace_app.command("inspect")
def trace_inspect(
    trace_file: Annotated[Path, typer.Argument(help="The trace file; its format is sniffed unless --format is given.")],
    format: Annotated[str, typer.Option("--format", help="auto, azure, burstgpt, mooncake, splitwise, vidur, vllm-bench, openai, agent.")] = "auto",
    skip_bad_rows: Annotated[bool, typer.Option("--skip-bad-rows", help="Skip malformed rows (counted) instead of stopping.")] = False,
    out_dir: Annotated[Optional[str], typer.Option("--out", metavar="DIR", help="Write inspect.html (figures), inspect.json and trace.parquet here (default: fleetsim-inspect/<file name>).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --out: replace an earlier inspection's outputs in that folder (the default folder is always replaced).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as one JSON object on stdout.")] = False,
) -> None:
    """What a trace holds: rows, time span, rate over time, length distributions, prefix sharing, sessions, models and
    measured latencies, with plotly figures in HTML."""
    from sim.metrics.export import check_output_folder, clean_json, write_folder
    from sim.report.trace_inspect import figure_html, inspect_trace
    from sim.workload.traces import read_trace

    try:
        out_dir = _out_folder(out_dir)
        if out_dir is None:  # the default folder belongs to this file's inspection: its latest replaces the last
            out_dir, overwrite = Path("fleetsim-inspect") / trace_file.name.split(".")[0], True
        check_output_folder(out_dir, overwrite)  # before reading the trace, not after
        trace = read_trace(trace_file, format, skip_bad_rows)
        stats = inspect_trace(trace)
        from sim.report.search_report import PLOTLY_BUNDLE, plotly_bundle

        written = write_folder(out_dir, {"trace": trace.table.drop("line", strict=False)}, {"inspect": stats},
                               {"inspect": figure_html(trace, f"{trace_file.name} ({trace.fmt})")},
                               {PLOTLY_BUNDLE: plotly_bundle()}, overwrite=overwrite)
    except FleetsimError as exc:
        fail(str(exc))
        return
    _notes(trace.notes)
    if as_json:
        sys.stdout.write(json.dumps(clean_json(stats)) + "\n")
        return
    render_inspect(trace_file, stats)
    out.print(f"\nwrote {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True)


def render_inspect(path: Path, s: dict) -> None:
    t = Table(title=f"{path} ({s['format']})", title_justify="left", show_edge=False, show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    mean = "-" if s["mean_rate_rps"] is None else f"{s['mean_rate_rps']:,.2f}"
    rows = [("requests", f"{s['rows']:,}"), ("time span (s)", f"{s['span_s']:,.1f}"),
            ("rate, mean / peak (req/s)", f"{mean} / {s['peak_rate_rps']:,.2f} (in {s['rate_bin_s']:,.0f} s bins)")]
    if s["sessions"] is not None:
        rows.append(("sessions", f"{s['sessions']:,}"))
    if s["prefix_sharing"] is not None:
        rows.append((f"prefix sharing ({s['prefix_block_tokens']}-token blocks seen before)",
                     f"{s['prefix_sharing']:.1%}"))
    if s["models"]:
        rows.append(("models (requests)", ", ".join(f"{m} ({n:,})" for m, n in s["models"].items())))
    for t_row in rows:
        t.add_row(*t_row)
    out.print(t)
    d = Table(title="\ndistributions", title_justify="left", show_edge=False)
    for col in ("", "mean", "p50", "p90", "p99", "max"):
        d.add_column(col, justify="left" if not col else "right")
    for name, dist, scale, fmt in (("input tokens", s["input_tokens"], 1, ",.0f"),
                                   ("output tokens", s["output_tokens"], 1, ",.0f"),
                                   *[(f"measured {m.removesuffix('_s').upper()} (ms)", v, 1e3, ",.1f")
                                     for m, v in s["measured"].items()]):
        d.add_row(name, *[format(dist[k] * scale, fmt) for k in ("mean", "p50", "p90", "p99", "max")])
    out.print(d)


@catalog_app.callback()
def catalog(ctx: typer.Context) -> None:
    """List every shipped model, GPU, node and fabric card."""
    if ctx.invoked_subcommand is not None:
        return
    from sim.hardware.catalog import fabric_names, load_fabric, load_gpu, load_node, node_names
    from sim.model.catalog import load_model, model_names
    from sim.model.precision import describe_precision

    t = Table(title="models", title_justify="left", show_edge=False)
    for col in ("name", "params B", "active B", "weights GB", "KV B/token", "context", "attention", "precision"):
        t.add_column(col, justify="left" if col in ("name", "attention", "precision") else "right",
                     no_wrap=col == "name")
    for name in model_names():
        m = load_model(name)
        s = m.summary()
        kind = m.attention.upper() + ("+MoE" if m.moe else "")
        t.add_row(name, f"{s['params_total_b']:,.1f}", f"{s['params_active_b']:,.1f}", f"{s['weight_gb']:,.1f}",
                  f"{s['kv_bytes_per_token']:,}", f"{m.max_context:,}", kind, describe_precision(m))
    out.print(t)
    g = Table(title="\nGPUs", title_justify="left", show_edge=False)
    for col in ("name", "BF16 TFLOP/s", "FP8 TFLOP/s", "HBM GB", "HBM TB/s", "link GB/s", "watts"):
        g.add_column(col, justify="left" if col == "name" else "right", no_wrap=col == "name")
    from sim.hardware.catalog import gpu_names

    for name in gpu_names():
        x = load_gpu(name)
        g.add_row(name, _fmt(x.bf16_tflops), _fmt(x.fp8_tflops), _fmt(x.hbm_gb), _fmt(x.hbm_tbps),
                  _fmt(x.scale_up_gbps), _fmt(x.power_w))
    out.print(g)
    out.print("\n[bold]nodes:[/] " + ", ".join(f"{n} ({load_node(n).gpus_per_node} GPUs)" for n in node_names()))
    out.print("[bold]fabrics:[/] " + ", ".join(f"{n} ({load_fabric(n).gbps_per_gpu:g} GB/s per GPU)"
                                              for n in fabric_names()))
    out.print("\n`fleetsim catalog show NAME` prints one card with its derived figures.")


@catalog_app.command("show")
def catalog_show(name: Annotated[str, typer.Argument(help="A model, GPU, node or fabric name or alias, or a path.")]) -> None:
    """Print one card with its derived figures (parameters, weight bytes, KV bytes per token)."""
    from dataclasses import asdict

    from sim.hardware.catalog import hardware_card
    from sim.model.catalog import load_model, model_card

    try:
        try:
            m = load_model(name)
            card = asdict(m)
            derived = m.summary()
            derived.pop("published_params_b", None)  # from the card, not derived
            try:
                card = model_card(name)
            except FleetsimError:
                pass
        except FleetsimError as model_error:
            card, derived = None, {}
            for kind in ("gpus", "nodes", "fabrics"):
                try:
                    card = hardware_card(kind, name)
                    break
                except FleetsimError:
                    continue
            if card is None:
                raise FleetsimError(f"{model_error}; not a GPU, node or fabric card either "
                                    f"(see `fleetsim catalog`)") from None
    except FleetsimError as exc:
        fail(str(exc))
        return
    t = Table(show_header=False, show_edge=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    for k, v in card.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                t.add_row(f"{k}.{k2}", str(v2))
        elif v not in (None, "", ()):
            t.add_row(k, str(v))
    for k, v in derived.items():
        t.add_row(f"[green]{k}[/] (derived)", _fmt(v))
    out.print(t)


if __name__ == "__main__":
    app()
