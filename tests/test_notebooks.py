"""The notebooks run top to bottom; the demo's final cell asserts its claims."""

import json
import pathlib

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = pathlib.Path(__file__).parent.parent / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tour.ipynb", "mlp_demo.ipynb", "data_parallel.ipynb"])
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
