"""The image and `make install` install from lock files: every package pyproject.toml names (and
everything they bring) at one version, each with the hashes pip checks (`--require-hashes`);
the image installs its dependencies in a layer of their own, before the code, on a base image
pinned by digest. `make lock` writes the locks (requirements/*.lock)."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "requirements" / "runtime.lock"
DEV = ROOT / "requirements" / "dev.lock"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

_ENTRY = re.compile(r"^(\S+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.MULTILINE)


def requirement_lines(lock: Path) -> list[str]:
    """Each requirement of a lock with its continuation lines joined; comments left out."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def pins(lock: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """Package (normalised name) -> (version, its hashes)."""
    found = {}
    for match in _ENTRY.finditer(lock.read_text()):
        hashes = frozenset(re.findall(r"sha256:([0-9a-f]{64})", match.group(3)))
        found[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return found


def named(dependencies: list[str]) -> dict[str, str]:
    """What pyproject.toml pins: normalised name -> version (each is `name==version`)."""
    found = {}
    for line in dependencies:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{line}: pyproject.toml pins every dependency"
        found[canonicalize_name(requirement.name)] = spec.version
    return found


@pytest.mark.parametrize("lock", [RUNTIME, DEV], ids=["runtime", "dev"])
def test_every_requirement_is_pinned_with_its_hashes(lock: Path) -> None:
    lines = requirement_lines(lock)
    assert len(lines) == len(pins(lock)) > 50
    for line in lines:
        assert re.match(r"^\S+==\S+ ", line), f"not pinned: {line}"
        assert "--hash=sha256:" in line, f"no hash: {line}"
    assert "make lock" in lock.read_text().splitlines()[1], "the header says how to regenerate it"


def test_the_locks_hold_what_pyproject_names_at_its_versions() -> None:
    runtime, dev = pins(RUNTIME), pins(DEV)
    for name, version in named(PROJECT["dependencies"]).items():
        assert runtime.get(name, ("missing",))[0] == version, f"runtime.lock: {name}=={version}"
    for name, version in named(
        PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]
    ).items():
        assert dev.get(name, ("missing",))[0] == version, f"dev.lock: {name}=={version}"


def test_the_tests_run_what_the_image_runs() -> None:
    dev = pins(DEV)
    for name, pinned in pins(RUNTIME).items():
        assert dev.get(name) == pinned, f"{name}: dev.lock differs from runtime.lock"


def test_the_image_installs_the_lock_in_a_layer_before_the_code() -> None:
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    (base,) = [line for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"FROM python:3\.11[\w.-]*-slim[\w.-]*@sha256:[0-9a-f]{64}", base)

    def first(pattern: str) -> int:
        return next(n for n, line in enumerate(lines) if re.search(pattern, line))

    copy_lock = first(r"^COPY requirements/runtime\.lock ")
    install_lock = first(r"pip install --require-hashes -r requirements/runtime\.lock")
    copy_code = min(
        first(r"^COPY pyproject\.toml"), first(r"^COPY shared"), first(r"^COPY services")
    )
    install_code = first(r"pip install --no-deps \.$")
    assert copy_lock < install_lock < copy_code < install_code
    assert not [
        line
        for line in lines[:copy_code]
        if line.startswith(("COPY", "ADD")) and "runtime.lock" not in line
    ], "only the lock comes before the dependencies' layer"


def test_make_install_installs_the_dev_lock(tmp_path: Path) -> None:
    """The commands `make install` would run in a fresh checkout (make -n: nothing is run)."""
    dry = subprocess.run(
        ["make", "-n", "install", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MAKEFLAGS": ""},
    ).stdout
    pip = [line for line in dry.splitlines() if " -m pip install " in line]
    assert any(line.endswith("--require-hashes -r requirements/dev.lock") for line in pip), dry
    assert any(line.endswith("--no-deps -e .") for line in pip), dry
    assert not [line for line in pip if "[dev]" in line], dry
    rules = subprocess.run(
        ["make", "-pn", "install", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MAKEFLAGS": ""},
    ).stdout
    stamp = re.search(rf"^{re.escape(str(tmp_path))}/venv/\.installed-\w+: (.*)$", rules, re.M)
    assert stamp and {"pyproject.toml", "requirements/dev.lock"} <= set(stamp.group(1).split())
