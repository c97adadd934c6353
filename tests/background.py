"""Slow tests whose work is a command of its own (a notebook run, the multi-device suite, a
type checker) start that command when collection ends, so that it runs beside the in-process
tests on the second core instead of after them.

A test marked ``@pytest.mark.background(command=f)`` (``f(**the test's parameters)`` gives a
:class:`Command`) takes the ``background_run`` fixture: the finished run of its command.
tests/conftest.py starts the commands of the selected tests, one at a time (the ones marked
``first`` first), and runs those tests last, when their commands have had the session to
finish; a command that a test asks for before it has started runs at once instead.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Command:
    """``argv`` run in ``cwd`` (None: a fresh directory of its own) with ``env`` added to the
    environment; ``first``: started before the others (the longest ones)."""

    argv: tuple[str, ...]
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    timeout: float = 600.0
    first: bool = False


def tree_first_on_path(root: pathlib.Path) -> tuple[str, str]:
    """PYTHONPATH with ``root`` first, so that the command imports the leakyjax the tests
    import: the source tree's, or the installed one where the tree has none (CI)."""
    return ("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished command: its exit code, its output (stdout and stderr) and where it ran."""

    command: Command
    returncode: int
    output: str
    cwd: pathlib.Path


class Runner:
    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="background")
        self._runs: dict[Command, concurrent.futures.Future[Run]] = {}
        self._processes: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._root: pathlib.Path | None = None  # the commands' directories, made when needed
        self._stopped = False

    def start(self, commands: Iterable[Command]) -> None:
        for command in commands:
            if command not in self._runs:
                self._runs[command] = self._pool.submit(self._run, command)

    def result(self, command: Command) -> Run:
        future = self._runs.get(command)
        if future is None or future.cancel():  # not started yet: run it now
            return self._run(command)
        return future.result()

    def stop(self) -> None:
        """Stops what is still queued or running (the session ended early) and removes the
        commands' directories."""
        with self._lock:
            self._stopped = True
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in self._processes:
                if process.poll() is None:
                    process.kill()
        self._pool.shutdown(wait=True)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def _run(self, command: Command) -> Run:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the test session has ended")
            if command.cwd is None and self._root is None:
                self._root = pathlib.Path(tempfile.mkdtemp(prefix="leakyjax-tests-"))
            cwd = pathlib.Path(command.cwd or tempfile.mkdtemp(dir=self._root))
            process = subprocess.Popen(
                command.argv,
                cwd=cwd,
                env={**os.environ, **dict(command.env)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            self._processes.append(process)
        try:
            output, _ = process.communicate(timeout=command.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            output += f"\n[killed after {command.timeout:.0f} s]"
        return Run(command, process.returncode, output, cwd)


RUNNER = Runner()
