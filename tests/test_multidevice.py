"""Runs tests/multidevice in its own process with 8 simulated CPU devices."""

import os
import pathlib
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_multidevice_suite():
    here = pathlib.Path(__file__).parent
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            str(here / "multidevice"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=here.parent,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
