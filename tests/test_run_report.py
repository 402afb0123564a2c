"""`run --out` writes report.html beside the Parquet, with one offline copy of plotly.js per folder; its figures
carry the run's own numbers."""

import json
import re
import shutil
import subprocess

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from sim.cli import app

runner = CliRunner()


def figures(page: str) -> dict[str, list[dict]]:
    """div id -> the traces of each Plotly.newPlot call in the page."""
    out, decoder = {}, json.JSONDecoder()
    for m in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', page):
        traces, _ = decoder.raw_decode(page, m.end())
        out[m.group(1)] = traces
    return out


def _values(trace: dict, axis: str) -> np.ndarray:
    """A trace's x or y, plain list or plotly's typed-array encoding."""
    v = trace[axis]
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).astype(float)
    return np.array([np.nan if x is None else x for x in v], dtype=float)


def test_run_report_has_the_runs_figures_and_one_plotly_bundle(tmp_path):
    out = tmp_path / "o"
    res = runner.invoke(app, ["run", "--num-requests", "300", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert {p.name for p in out.iterdir()} >= {"report.html", "plotly.min.js", "requests.parquet", "summary.json"}
    page = (out / "report.html").read_text()
    assert '<script src="plotly.min.js"></script>' in page and len(page) < 1_000_000  # no inline plotly.js
    figs = figures(page)
    assert set(figs) >= {"latency-cdfs", "over-time", "throughput"}
    cdfs = figs["latency-cdfs"]
    assert len(cdfs) == 4
    for trace in cdfs:
        y = _values(trace, "y")
        assert len(y) and np.all(np.diff(y) >= 0) and y[-1] == pytest.approx(1.0)
    x, y = _values(cdfs[0], "x"), _values(cdfs[0], "y")
    assert x[np.searchsorted(y, 0.5)] == pytest.approx(s["ttft_p50_s"] * 1e3, rel=0.02)
    over = figs["over-time"]
    counts = [t for t in over if t.get("yaxis") in (None, "y", "y2")]
    assert counts and all(_values(t, "y").min() >= 0 for t in counts)
    running = [t for t in over if t.get("yaxis") == "y2"]
    assert running and all(_values(t, "y")[-1] == 0 for t in running)  # every request finished
    req = pl.read_parquet(out / "requests.parquet")
    bars = figs["throughput"][0]
    width = float(bars["width"]) if not isinstance(bars["width"], list) else float(bars["width"][0])
    assert _values(bars, "y").sum() * width == pytest.approx(float(req["output_tokens"].sum()), rel=1e-9)


def test_agent_run_report_draws_jobs(tmp_path):
    out = tmp_path / "a"
    res = runner.invoke(app, ["run", "--agents", "2", "--jobs", "5", "--turns", "3", "--kv-policy", "pin:30",
                              "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    jobs = pl.read_parquet(out / "jobs.parquet")
    # Each job's KV held while its tools ran adds up to the run's.
    assert jobs["kv_pinned_gb_s"].sum() == pytest.approx(json.loads(res.stdout)["pinned_gb_s"], rel=1e-9)
    assert jobs["kv_pinned_gb_s"].sum() > 0
    figs = figures((out / "report.html").read_text())
    jct = figs["agents"][0]
    assert len(_values(jct, "x")) == 5
    calls = [t for t in figs["agents"] if t.get("name") == "LLM call"][0]
    assert np.count_nonzero(~np.isnan(_values(calls, "x"))) == 2 * 5 * 3  # a segment per call
    held = [t for t in figs["agents"] if t.get("name") == "KV held"][0]
    assert _values(held, "x").sum() == pytest.approx(float(jobs["kv_pinned_gb_s"].sum()), rel=1e-9)


def test_compare_page_shares_the_folders_plotly(tmp_path):
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "vllm_bench_result.json"
    out = tmp_path / "c"
    res = runner.invoke(app, ["run", "--trace", str(fixture), "--compare", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert 'src="plotly.min.js"' in (out / "compare.html").read_text()
    assert sum(1 for p in out.iterdir() if p.suffix == ".js") == 1
    assert all(p.stat().st_size < 2_000_000 for p in out.glob("*.html"))


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="no headless browser on this machine")
def test_report_renders_in_a_headless_browser(tmp_path):  # pragma: no cover (needs a browser)
    out = tmp_path / "o"
    assert runner.invoke(app, ["run", "--num-requests", "100", "--out", str(out)]).exit_code == 0
    browser = next(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b))
    dom = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=5000",
                          "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count('class="main-svg"') >= 3  # plotly drew the figures
