"""The notebooks run top to bottom; the demos' final cells assert their claims."""

import json
import pathlib

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = pathlib.Path(__file__).parent.parent / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["tour.ipynb", "mlp_demo.ipynb", "data_parallel.ipynb", "dead_units.ipynb"]
)
def test_notebook_runs(name, tmp_path):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # Runs in a scratch directory, so the committed figures are left alone.
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    if name == "mlp_demo.ipynb":
        results = json.loads((tmp_path / "figures" / "mlp_demo_results.json").read_text())
        assert min(results["baseline"]["leaky_relu"]["test_acc"]) >= 0.95
        assert max(results["full_shock"]["relu"]["test_acc"]) <= 0.2
        assert min(results["full_shock"]["leaky_relu"]["test_acc"]) >= 0.9
    if name == "dead_units.ipynb":
        results = json.loads((tmp_path / "figures" / "dead_units_results.json").read_text())
        assert results["shock"]["relu"]["dead_hidden1"] == [1.0, 1.0, 1.0]
        assert min(results["shock"]["leakified"]["dead_hidden1"]) >= 0.9
        assert min(results["shock"]["leakified"]["test_acc"]) >= 0.9
