"""Mint a JWT for local use: `python -m shared.cli.token --roles agent --sub agent-001`."""

from __future__ import annotations

import argparse
from datetime import timedelta

from shared.domain.clock import system_clock
from shared.domain.codes import Role
from shared.http.auth import mint_token
from shared.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--roles",
        default="agent",
        help=f"comma-separated, from: {', '.join(r.value for r in Role)}",
    )
    parser.add_argument("--sub", default=None, help="staff or client id (default: <role>-local)")
    parser.add_argument(
        "--department", default=None, help="the staff member's department (optional claim)"
    )
    parser.add_argument("--hours", type=float, default=8.0, help="lifetime in hours")
    args = parser.parse_args(argv)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    try:
        for role in roles:
            Role(role)
    except ValueError as exc:
        parser.error(str(exc))
    sub = args.sub or f"{roles[0]}-local"
    settings = Settings()
    try:
        settings.check()
    except ValueError as exc:
        parser.error(str(exc))
    try:
        lifetime = timedelta(hours=args.hours)
        department = (args.department or "").strip() or None
        print(mint_token(settings, sub, roles, lifetime, system_clock(), department))
    except ValueError as exc:  # HS256 tokens are off here
        parser.error(str(exc))


if __name__ == "__main__":
    main()
