"""Log lines: JSON, times in ISO-8601 UTC with their zone; alembic's start-up lines at debug."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from shared.logs import QuietStartup, UtcJsonFormatter
from tests.e2e.processes import ROOT, service_env


def setup_logs(database: Path, level: str) -> list[dict[str, str]]:
    """The JSON lines the setup step logs at `level` (its migrations run: alembic's chance)."""
    env = service_env(f"sqlite:///{database}", COMPLAINTS_LOG_LEVEL=level, TZ="Asia/Shanghai")
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli.setup_store"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]


def test_alembic_speaks_only_at_debug_level(tmp_path: Path) -> None:
    assert not [
        line for line in setup_logs(tmp_path / "a.sqlite3", "info") if "alembic" in line["logger"]
    ]
    lines = setup_logs(tmp_path / "b.sqlite3", "debug")
    alembic = [line for line in lines if line["logger"].startswith("alembic")]
    assert alembic and {line["level"] for line in alembic} == {"DEBUG"}
    for line in lines:  # (the process's local zone is Shanghai's)
        assert line["time"].endswith("+00:00")
        assert datetime.fromisoformat(line["time"]).utcoffset() == UTC.utcoffset(None)


def test_a_line_is_stamped_in_utc_whatever_the_local_zone() -> None:
    record = logging.LogRecord("complaints", logging.INFO, __file__, 1, "hello", None, None)
    record.created = datetime(2026, 12, 1, 10, 34, 7, 123000, tzinfo=UTC).timestamp()
    formatter = UtcJsonFormatter("%(asctime)s %(levelname)s %(message)s")
    assert json.loads(formatter.format(record))["asctime"] == "2026-12-01T10:34:07.123+00:00"
    name = "alembic.runtime.migration"
    noisy = logging.LogRecord(name, logging.INFO, __file__, 1, "x", None, None)
    assert QuietStartup().filter(noisy) is logging.getLogger().isEnabledFor(logging.DEBUG)
    assert noisy.levelname == "DEBUG"
