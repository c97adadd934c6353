"""Runs tests/multidevice in its own process with 8 simulated CPU devices."""

import pathlib
import sys

import pytest
from background import Command

ROOT = pathlib.Path(__file__).parent.parent


def _suite() -> Command:
    pytest = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=")
    return Command(
        (*pytest, str(ROOT / "tests" / "multidevice")),
        cwd=str(ROOT),
        env=(("XLA_FLAGS", "--xla_force_host_platform_device_count=8"),),
    )


@pytest.mark.slow
@pytest.mark.background(command=_suite)
def test_multidevice_suite(background_run):
    assert background_run.returncode == 0, background_run.output[-7000:]
