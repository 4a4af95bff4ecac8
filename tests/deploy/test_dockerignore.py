"""The image's build context (the repository root) leaves out the virtualenv, var/ with the
development signing key and KEK file, git, caches, screenshots and any key file, with the
rules Docker applies to .dockerignore (a pattern excludes what it matches and everything
under it; `**` any number of directories; a later `!` pattern includes again)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def patterns() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        glob = line.removeprefix("!").strip("/")
        regex = ""
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif glob.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif glob[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif glob[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif glob[i] == "[":
                end = glob.index("]", i)
                regex, i = regex + glob[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(glob[i]), i + 1
        rules.append((keep, re.compile(regex)))
    return rules


def excluded(path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    out = False
    for keep, pattern in patterns():
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            out = not keep
    return out


@pytest.mark.parametrize(
    "path",
    [
        "var/audit-signing-key.pem",  # the development signing key (COMPLAINTS_AUDIT_KEY_PATH)
        "var/key-encryption-keys",
        "var/complaints.sqlite3",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/browser/screenshots/test_x/1-page.png",
        "deploy/secrets/kek/key-encryption-keys",
        "deploy/secrets/audit/audit-signing-key.pem",
        "somewhere/else/signing.pem",
        "shared/__pycache__/settings.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/x.json",
        ".env",
    ],
)
def test_is_left_out_of_the_build_context(path: str) -> None:
    assert excluded(path), path


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "shared/settings.py",
        "shared/policy/default.toml",
        "shared/logging.json",
        "services/intake/main.py",
        "deploy/Dockerfile",
    ],
)
def test_what_the_image_copies_stays_in(path: str) -> None:
    assert not excluded(path), path


def test_what_the_dockerfile_copies_is_in_the_context() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE):
        for source in copied.split():
            assert not excluded(source), source
