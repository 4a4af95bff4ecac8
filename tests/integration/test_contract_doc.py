"""docs/api.md, the contract other teams build against, names every route each service serves,
under the service that serves it; and the README's links into the repository lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.callback.main import create_app as callback_app
from services.escalation.main import create_app as escalation_app
from services.intake.main import create_app as intake_app
from services.investigation.main import create_app as investigation_app
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = (ROOT / "docs/api.md").read_text(encoding="utf-8")
APPS = {
    "intake": intake_app,
    "investigation": investigation_app,
    "escalation": escalation_app,
    "callback": callback_app,
}
#: Served by every service, and said so once in the contract.
EVERYWHERE = {
    "/complaints",
    "/complaints/{id}",
    "/complaints/{id}/history",
    "/audit/export",
    "/audit/checkpoints",
    "/audit/public-key",
    "/health",
    "/ready",
    "/metrics",
}


def _documented(path: str) -> str:
    return re.sub(r"\{(complaint|incident|subscription)_id\}", "{id}", path)


def _lines_naming(path: str) -> list[str]:
    """The contract's lines that name the path in code: `/path`, `GET /path` or `/path?…`."""
    named = re.compile(rf"`(?:(?:GET|POST|DELETE) )?{re.escape(path)}[`?]")
    return [line for line in CONTRACT.splitlines() if named.search(line)]


@pytest.mark.parametrize("service", APPS)
def test_the_contract_names_every_route_of_every_service(service: str, tmp_path: Path) -> None:
    app = APPS[service](make_settings(f"sqlite:///{tmp_path / 'unused.sqlite3'}"))
    served = {_documented(path) for path in app.openapi()["paths"]}
    assert served >= EVERYWHERE
    missing = [path for path in sorted(served) if not _lines_naming(path)]
    elsewhere = [
        path
        for path in sorted(served - EVERYWHERE)
        if not any(
            line.startswith(f"| {service} |") or f"({service})" in line
            for line in _lines_naming(path)
        )
    ]
    assert (missing, elsewhere) == ([], []), f"docs/api.md and {service}'s routes differ"


def test_the_readmes_links_into_the_repository_lead_somewhere() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:]+)\)", readme)
    assert "docs/api.md" in links
    assert [link for link in links if not (ROOT / link).exists()] == []
    for path in ROOT.glob("**/*.py"):
        if ".venv" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?<![/\w])api\.md", text), f"{path}: say docs/api.md"
