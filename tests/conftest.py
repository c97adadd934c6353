import os
import pathlib
import sysconfig

import hypothesis
import pytest

# Hypothesis profiles: "ci" (the default) runs the case counts the property tests promise
# (10,100 in all), derandomized so that every run checks the same cases; "explore" runs as
# many with fresh random cases; "dev" runs at most 50 per test for quick local iteration.
# Choose one with HYPOTHESIS_PROFILE=explore pytest.
hypothesis.settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
hypothesis.settings.register_profile("explore", deadline=None, print_blob=True)
hypothesis.settings.register_profile("dev", deadline=None, max_examples=50)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
hypothesis.settings.load_profile(PROFILE)


def pytest_terminal_summary(terminalreporter):
    import strategies  # a test helper, imported once the tests have run

    cases = strategies.GENERATED["cases"]
    if cases:
        terminalreporter.write_line(
            f"hypothesis ({PROFILE} profile): {cases} generated cases run in property tests"
        )


def _imported_leakyjax() -> pathlib.Path:
    import leakyjax

    return pathlib.Path(leakyjax.__file__).resolve().parent


def pytest_report_header(config):
    import leakyjax

    return f"leakyjax {leakyjax.__version__} imported from {_imported_leakyjax()}"


def pytest_configure(config):
    # CI sets LEAKYJAX_TEST_INSTALLED=1: the tests must then run against the installed wheel
    # (in this environment's site-packages), never against a source tree on sys.path.
    if os.environ.get("LEAKYJAX_TEST_INSTALLED") == "1":
        site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
        if not _imported_leakyjax().is_relative_to(site):
            raise pytest.UsageError(
                f"LEAKYJAX_TEST_INSTALLED=1, but leakyjax was imported from "
                f"{_imported_leakyjax()}, not from {site}"
            )


@pytest.fixture
def no_warnings():
    """Any warning is an error (``pytestmark = pytest.mark.usefixtures("no_warnings")``)."""
    import helpers

    with helpers.no_warnings():
        yield


@pytest.fixture(scope="session")
def tiny_benchmark():
    """``leakyjax.benchmark.run`` at a tiny size, once for the session: the benchmark's
    command line (test_benchmark.py) and its measurements (test_performance.py) share it."""
    from leakyjax import benchmark

    return benchmark.run(size=1 << 10, layers=2, width=16, batch=8, rounds=2, quiet=True)
