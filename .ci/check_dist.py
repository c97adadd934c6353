"""Checks the built sdist and wheel: what each must contain, and what the wheel must not.

Usage: python .ci/check_dist.py DIST_DIR  (run from the source tree; uses `git ls-files`).
"""

import ast
import email
import pathlib
import subprocess
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
# What the sdist's tests read (tests/ with its helpers, the docs pages, the notebooks), and
# what its readers need.
SDIST_TREES = ("tests/", "docs/", "notebooks/", "leakyjax/")
SDIST_FILES = ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "MANIFEST.in")


def tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return out.splitlines()


def main(dist: pathlib.Path) -> list[str]:
    problems = []
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    version = next(
        node.value.value
        for node in ast.parse((ROOT / "leakyjax" / "__init__.py").read_text()).body
        if isinstance(node, ast.Assign) and node.targets[0].id == "__version__"  # type: ignore[attr-defined]
    )
    files = tracked()

    with tarfile.open(sdist) as tar:
        prefix = f"leakyjax-{version}/"
        in_sdist = {name.removeprefix(prefix) for name in tar.getnames()}
    wanted = [f for f in files if f.startswith(SDIST_TREES)] + list(SDIST_FILES)
    problems += [f"sdist lacks {f}" for f in wanted if f not in in_sdist]
    problems += [f"sdist has a stray {f}" for f in in_sdist if "__pycache__" in f]

    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
        metadata = email.message_from_bytes(whl.read(f"leakyjax-{version}.dist-info/METADATA"))
    package = [f for f in files if f.startswith("leakyjax/")]
    problems += [f"wheel lacks {f}" for f in package if f not in in_wheel]
    for required in ("leakyjax/py.typed", f"leakyjax-{version}.dist-info/licenses/LICENSE"):
        if required not in in_wheel:
            problems.append(f"wheel lacks {required}")
    problems += [
        f"wheel has {f} (only leakyjax/ and its dist-info belong there)"
        for f in in_wheel
        if not f.startswith(("leakyjax/", f"leakyjax-{version}.dist-info/")) or "__pycache__" in f
    ]
    for field, value in (
        ("Version", version),
        ("License-Expression", "Apache-2.0"),
        ("Requires-Python", ">=3.11"),
    ):
        if metadata[field] != value:
            problems.append(f"wheel METADATA {field} is {metadata[field]!r}, expected {value!r}")
    print(
        f"check_dist: sdist {sdist.name} ({len(in_sdist)} entries), wheel {wheel.name} "
        f"({len(in_wheel)} files): {len(problems)} problems"
    )
    return problems


if __name__ == "__main__":
    problems = main(pathlib.Path(sys.argv[1]))
    for problem in problems:
        print("  " + problem)
    sys.exit(1 if problems else 0)
