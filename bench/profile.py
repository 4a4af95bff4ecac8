"""A py-spy profile of a service under load, summarised by where its time goes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOP = 15


def record(
    pid: int, seconds: int, output: Path, load: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Sample `pid` (all its threads, idle ones left out) while `load` runs."""
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
            "--gil",  # only what holds the GIL: CPU spent in Python, not waits on the database
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    loaded = load()
    _, error = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0:
        return {"error": error.decode(errors="replace")[-500:], "load": loaded}
    return {"load": loaded, **summarise(output.read_text())}


def _frame(text: str) -> str:
    """`function (path/to/file.py:123)` → `function (file.py)`: one entry per function."""
    name, _, where = text.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(where).parts
    short = (
        "/".join(parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts else where
    )
    for prefix in ("/work/", str(Path.cwd()) + "/"):
        short = short.removeprefix(prefix)
    return f"{name} ({short})"


def summarise(collapsed: str) -> dict[str, Any]:
    """Own and inclusive shares of the samples, by function and by package."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if frame.rsplit(" (", 1)[-1].startswith(("shared/", "services/")):
                inclusive[frame] += count  # our own code, with all it calls
        packages[_package(frames[-1])] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"where": where, "share": round(n / total, 4)} for where, n in counter.most_common(TOP)
        ]

    return {
        "samples": total,
        "own": share(own),
        "inclusive": share(inclusive),
        "packages": share(packages),
    }


def _package(frame: str) -> str:
    where = frame.rsplit(" (", 1)[-1].rstrip(")")
    if where.startswith(("shared/", "services/")):
        return "/".join(where.split("/")[:2])
    if "/" in where and not where.startswith("<"):
        return where.split("/")[0]
    return where
