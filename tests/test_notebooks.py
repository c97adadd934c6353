"""The notebooks run top to bottom; the demos' final cells assert their claims."""

import json
import pathlib
import sys

import pytest
from background import Command, tree_first_on_path

pytest.importorskip("nbclient")
pytest.importorskip("nbformat")

HERE = pathlib.Path(__file__).parent
NOTEBOOKS = HERE.parent / "notebooks"


# Notebooks whose full run takes minutes run a small configuration here, which the
# environment variable selects; their committed outputs are the full run's.
SMALL = {"plasticity.ipynb": ("LEAKYJAX_PLASTICITY_SMALL", "1")}


def _run(name: str) -> Command:
    # In a scratch directory of its own, so the committed figures are left alone.
    small = (SMALL[name],) if name in SMALL else ()
    return Command(
        (sys.executable, str(HERE / "run_notebook.py"), str(NOTEBOOKS / name)),
        env=(tree_first_on_path(HERE.parent), *small),  # for the kernel too
        timeout=1800,
        first=True,
    )


@pytest.mark.slow
@pytest.mark.background(command=_run)
@pytest.mark.parametrize(  # the longest first: they start in this order
    "name",
    [
        "mlp_demo.ipynb",
        "dead_units.ipynb",
        "plasticity.ipynb",
        "tour.ipynb",
        "data_parallel.ipynb",
    ],
)
def test_notebook_runs(name, background_run):
    assert background_run.returncode == 0, background_run.output[-5000:]
    figures = background_run.cwd / "figures"
    if name == "mlp_demo.ipynb":
        results = json.loads((figures / "mlp_demo_results.json").read_text())
        assert min(results["baseline"]["leaky_relu"]["test_acc"]) >= 0.95
        assert max(results["full_shock"]["relu"]["test_acc"]) <= 0.2
        assert min(results["full_shock"]["leaky_relu"]["test_acc"]) >= 0.9
    if name == "dead_units.ipynb":
        results = json.loads((figures / "dead_units_results.json").read_text())
        assert results["shock"]["relu"]["dead_hidden1"] == [1.0, 1.0, 1.0]
        assert min(results["shock"]["leakified"]["dead_hidden1"]) >= 0.9
        assert min(results["shock"]["leakified"]["test_acc"]) >= 0.9
    if name == "plasticity.ipynb":  # the small configuration: 200,000 examples, 12 runs
        results = json.loads((figures / "plasticity_results.json").read_text())
        assert results["config"]["small"] and results["runs"] == 12
        curves, baseline = results["curves"], results["linear_baseline"]
        late = {n: sum(c[5:]) / len(c[5:]) for n, c in curves.items()}  # second half
        dead = results["dead_fraction"]["relu"]
        assert dead[-1] >= dead[0] + 0.2  # ReLU's units die
        assert late["relu"] > sum(curves["relu"][:2]) / 2 + 0.05  # and its error grows
        for method in ("revive", "revive N=2,000", "cbp"):  # below ReLU's and the baseline
            assert late[method] < min(late["relu"], baseline) - 0.1, method
        assert all(n > 0 for n in results["revived_per_run"].values())
