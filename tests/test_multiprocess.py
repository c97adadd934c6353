"""Multi-process, for real: 2 JAX processes on 127.0.0.1 (``jax.distributed.initialize``,
gloo CPU collectives) train a ``leakify``'d MLP data-parallel and track its dead units.

Each process runs ``tests/multiprocess_worker.py``; the same script runs single-process as
the reference. With a mesh of 2 devices, the only cross-device reduction is a sum of 2
partial gradients, and a + b == b + a exactly, so 2 processes and 1 process with 2
simulated devices compute the same bits. One process with 1 device sums the batch in
another order: equal to rounding only.
"""

import pathlib
import sys

import numpy as np
import pytest
from background import RUNNER, Command, tree_first_on_path
from multiprocess_worker import BATCH, GLOO_UNAVAILABLE, ONE_PROCESS, STEPS, TWO_PROCESSES

pytest.importorskip("sklearn")

HERE = pathlib.Path(__file__).parent
WORKER = HERE / "multiprocess_worker.py"


def _runs() -> Command:
    # Every process the tests compare, started by the worker script (in the background, see
    # tests/background.py), writing into a directory of its own.
    env = (tree_first_on_path(HERE.parent),)
    return Command((sys.executable, str(WORKER), "--all", "."), env=env, first=True)


pytestmark = pytest.mark.background(command=_runs)


@pytest.fixture(scope="module")
def runs() -> dict[str, list[dict[str, np.ndarray]]]:
    run = RUNNER.result(_runs())
    if run.returncode == GLOO_UNAVAILABLE:
        pytest.skip("this JAX cannot run CPU collectives with gloo: " + run.output[-500:])
    assert run.returncode == 0, run.output[-4000:]

    def load(name: str) -> dict[str, np.ndarray]:
        with np.load(run.cwd / name) as f:
            return dict(f)

    return {
        "2 processes": [load(name) for name in TWO_PROCESSES],
        "1 process": [load(name) for name in ONE_PROCESS],
    }


def _assert_same_bits(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key, strict=True)


@pytest.mark.slow
def test_processes_agree_bit_for_bit(runs):
    first, second = runs["2 processes"]
    _assert_same_bits(first, second)


@pytest.mark.slow
def test_two_processes_equal_one_process_on_the_same_mesh_bit_for_bit(runs):
    _assert_same_bits(runs["2 processes"][0], runs["1 process"][0])


@pytest.mark.slow
def test_two_processes_equal_one_device_to_rounding(runs):
    distributed, single = runs["2 processes"][0], runs["1 process"][1]
    for key in distributed:
        if key.startswith(("dead/", "examples/")):
            np.testing.assert_array_equal(distributed[key], single[key], err_msg=key)
        else:
            # The batch mean is summed in another order: the tightest tolerance that holds
            # on jax 0.8 to 0.12 (observed: 3e-8 absolute on the parameters).
            np.testing.assert_allclose(distributed[key], single[key], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_local_trackers_merged_across_processes_equal_the_global_tracker(runs):
    run = runs["2 processes"][0]
    sites = sorted(k.removeprefix("dead/global/") for k in run if k.startswith("dead/global/"))
    assert sites == ["0", "1"]
    for site in sites:
        np.testing.assert_array_equal(run[f"dead/merged/{site}"], run[f"dead/global/{site}"])
        assert run[f"examples/merged/{site}"] == run[f"examples/global/{site}"] == STEPS * BATCH
    # The shocked quarter of the first layer is dead (by the sign of its pre-activation;
    # leaky_relu still passes it a gradient) and the rest alive.
    np.testing.assert_array_equal(run["dead/global/0"], np.arange(128) < 32)
