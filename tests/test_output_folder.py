"""A run's output folder appears whole or not at all: an earlier run's folder survives a failed write untouched, no
partial folder is left beside it, and --overwrite replaces only fleetsim's own files."""

import os
import stat

import polars as pl
import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import FleetsimError
from sim.metrics.export import write_folder

runner = CliRunner()
SMALL = ["run", "--num-requests", "20"]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _tables():
    return {"a": pl.DataFrame({"x": [1, 2]}), "b": pl.DataFrame({"y": [3.0]})}


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_write_that_fails_midway_changes_nothing(tmp_path, monkeypatch, failure):
    out = tmp_path / "run"
    write_folder(out, _tables(), {"summary": {"v": 1}})
    before = _snapshot(out)
    calls = []
    real = pl.DataFrame.write_parquet

    def second_fails(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise failure
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", second_fails)
    with pytest.raises(FleetsimError if isinstance(failure, OSError) else KeyboardInterrupt) as err:
        write_folder(out, _tables(), {"summary": {"v": 2}}, overwrite=True)
    if isinstance(failure, OSError):
        assert "cannot write b.parquet (No space left on device); nothing was changed" in str(err.value)
    assert _snapshot(out) == before  # the first table was written, but only into the staging folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or set-aside folder left


def test_a_new_folder_fails_without_trace(tmp_path, monkeypatch):
    monkeypatch.setattr(pl.DataFrame, "write_parquet", lambda *a, **k: (_ for _ in ()).throw(OSError(5, "I/O")))
    with pytest.raises(FleetsimError):
        write_folder(tmp_path / "new", _tables(), {"summary": {}})
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_our_files_and_keeps_the_users(tmp_path):
    out = tmp_path / "run"
    write_folder(out, {**_tables(), "jobs": pl.DataFrame({"j": [1]})}, {"summary": {"v": 1}})
    (out / "notes.txt").write_text("mine")
    (out / "figs").mkdir()
    (out / "figs" / "f.png").write_bytes(b"png")
    written = write_folder(out, _tables(), {"summary": {"v": 2}}, overwrite=True)
    assert sorted(p.name for p in written) == ["a.parquet", "b.parquet", "summary.json"]
    assert sorted(p.name for p in out.iterdir()) == ["a.parquet", "b.parquet", "figs", "notes.txt", "summary.json"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "figs" / "f.png").read_bytes() == b"png"
    assert '"v": 2' in (out / "summary.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_the_folder_is_not_private(tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        write_folder(out, _tables(), {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # mkdtemp's 0700 would hide a shared run from colleagues


def test_overwriting_the_folder_one_stands_in(tmp_path, monkeypatch):
    out = tmp_path / "run"
    write_folder(out, _tables(), {})
    monkeypatch.chdir(out)
    res = runner.invoke(app, [*SMALL, "--out", ".", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["kv_timeline.parquet", "plotly.min.js", "report.html",
                                                     "requests.parquet", "summary.json"]
    assert os.getcwd() == str(out)  # still standing in a folder that exists


def test_a_symlinked_output_folder_stays_a_link(tmp_path):
    real = tmp_path / "real"
    write_folder(real, _tables(), {})
    link = tmp_path / "link"
    link.symlink_to(real)
    write_folder(link, {"c": pl.DataFrame({"z": [1]})}, {}, overwrite=True)
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == ["c.parquet"]


def test_trace_inspect_refuses_a_used_folder_unless_asked(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,100,10\n"
                     "2023-11-16 18:15:47.6805900,200,20\n")
    out = tmp_path / "i"
    out.mkdir()
    (out / "inspect.json").write_text("{}")
    res = runner.invoke(app, ["trace", "inspect", str(trace), "--out", str(out)])
    assert res.exit_code == 2 and "pass --overwrite" in res.output and len(res.output.strip().splitlines()) == 1
    assert (out / "inspect.json").read_text() == "{}"
    res = runner.invoke(app, ["trace", "inspect", str(trace), "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["inspect.html", "inspect.json", "plotly.min.js", "trace.parquet"]


def test_writing_into_the_empty_folder_one_stands_in(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    monkeypatch.chdir(out)
    write_folder(".", _tables(), {})
    assert os.getcwd() == str(out) and sorted(p.name for p in out.iterdir()) == ["a.parquet", "b.parquet"]
