import os
import pathlib
import sys
import sysconfig

import hypothesis
import pytest

# Hypothesis profiles: "full" runs the case counts the property tests declare (10,100 in all),
# derandomized so that every run checks the same cases (CI's newest_jax leg); "default" (the
# README's test command) runs a tenth of them (1,010), derandomized too; "explore" runs the
# full counts with fresh random cases; "dev" runs at most 50 per test for quick local
# iteration. Choose one with HYPOTHESIS_PROFILE=explore pytest.
for _name in ("default", "full"):
    hypothesis.settings.register_profile(_name, deadline=None, derandomize=True, print_blob=True)
hypothesis.settings.register_profile("explore", deadline=None, print_blob=True)
hypothesis.settings.register_profile("dev", deadline=None, max_examples=50)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
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
    config.addinivalue_line(
        "markers",
        "background(command=f): the test's command, f(**its parameters), starts when "
        "collection ends and runs beside the other tests (tests/background.py)",
    )
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


def _background_command(item):
    marker = item.get_closest_marker("background")
    if marker is None:
        return None
    params = item.callspec.params if hasattr(item, "callspec") else {}
    return marker.kwargs["command"](**params)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    # The tests whose work runs in the background go last, the longest commands first.
    def order(item):
        command = _background_command(item)
        return (0, False) if command is None else (1, not command.first)

    items.sort(key=order)  # stable: in each group, the collection order


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    commands = [_background_command(item) for item in session.items]
    if any(commands):
        import background

        background.RUNNER.start(c for c in commands if c is not None)


def pytest_sessionfinish(session):
    background = sys.modules.get("background")
    if background is not None:
        background.RUNNER.stop()


@pytest.fixture
def background_run(request):
    """The finished run of the test's ``@pytest.mark.background`` command."""
    import background

    return background.RUNNER.result(_background_command(request.node))
