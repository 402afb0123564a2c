"""Nothing heavy loads before it is used: `import sim` and `fleetsim --help` leave numpy, polars, scipy, plotly,
Ray, the simulator and the planner unimported (what the speed of start-up rests on; benchmarks/bench_startup.py
prints the seconds). A run loads the simulator but not the planner, plotly or scipy's optimisers."""

import json
import subprocess
import sys

HEAVY = ("numpy", "polars", "scipy", "scipy.optimize", "plotly", "ray", "sim.runner", "sim.planner", "simpy")


def _loaded_after(code: str, extra: tuple[str, ...] = ()) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps([m for m in {HEAVY + extra!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_sim_loads_nothing_heavy():
    assert _loaded_after("import sim") == []


def test_help_loads_nothing_heavy():
    code = ("sys.argv = ['fleetsim', '--help']\nfrom sim.cli import app\ntry:\n    app()\nexcept SystemExit:\n"
            "    pass")
    # Help is plain click text: rich (and typer's rich help, markdown and all) loads only for a command's output.
    assert _loaded_after(code, extra=("rich",)) == []


def test_the_public_names_load_on_first_use():
    code = "import sim\nassert callable(sim.run) and sim.Scenario().model\nfrom sim import search, WorkloadSpec"
    loaded = _loaded_after(code)
    assert "sim.runner" in loaded and "polars" in loaded and "sim.planner" in loaded


def test_a_run_loads_neither_the_planner_nor_plotly_nor_optimisers():
    loaded = _loaded_after("from sim.runner import run\nrun(num_gpus=1, workload={'num_requests': 20})")
    assert "sim.runner" in loaded and "sim.planner" not in loaded
    assert "plotly" not in loaded and "scipy.optimize" not in loaded
