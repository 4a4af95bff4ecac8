"""The mutation score of the last `mutmut run`, per mutated module: `make mutation` prints it.

mutmut 3 keeps each module's verdicts in `mutants/<path>.meta` (JSON: mutant name → exit code
of the test run). A mutant counts as killed when a test failed or timed out on it; every other
verdict counts against the score (survived, no test reaches it, suspicious), and mutants not
checked yet are left out. Survivors judged equivalent (no test can tell them from the original)
are listed with their reason in `devtools/mutation-equivalent.md`; they stay in the score and
are only marked as such, so the number is the one mutmut would give.

    python -m devtools.mutation_score              # the table
    python -m devtools.mutation_score --survivors  # and every surviving mutant, by name
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = Path(__file__).resolve().parent / "mutation-equivalent.md"
KILLED = {"killed", "timeout", "caught by type check"}
UNCHECKED = {"not checked", "skipped", "check was interrupted by user"}


@dataclass
class Module:
    path: str
    killed: int = 0
    tested: int = 0
    survivors: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return 100.0 * self.killed / self.tested if self.tested else 0.0


def mutated_modules(root: Path) -> list[str]:
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return list(config["tool"]["mutmut"]["only_mutate"])


def equivalent_mutants(path: Path = EQUIVALENT) -> dict[str, str]:
    """Mutant name → why it cannot be killed, from the list's `- \\`name\\`: reason` lines."""
    if not path.exists():
        return {}
    found = re.findall(r"^- `([^`]+)`:\s*(.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    return dict(found)


def read(root: Path, path: str) -> Module | None:
    meta = root / "mutants" / f"{path}.meta"
    if not meta.exists():
        return None
    module = Module(path)
    codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    for name, code in sorted(codes.items(), key=lambda item: _natural(item[0])):
        status = status_by_exit_code[code]
        if status in UNCHECKED:
            continue
        module.tested += 1
        if status in KILLED:
            module.killed += 1
        else:
            module.survivors.append(name if status == "survived" else f"{name} ({status})")
    return module


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true", help="list every surviving mutant")
    args = parser.parse_args(argv)
    equivalent = equivalent_mutants()
    modules = [m for m in (read(ROOT, p) for p in mutated_modules(ROOT)) if m is not None]
    if not modules:
        print("No mutmut results under mutants/: run `make mutation` first.")
        return 1
    print(f"{'module':<32} {'killed':>7} {'total':>6} {'score':>7}   survivors (equivalent)")
    for m in modules:
        if not m.tested:
            print(f"{m.path:<32} {'':>7} {'':>6} {'not run':>7}")
            continue
        known = sum(1 for s in m.survivors if s in equivalent)
        print(
            f"{m.path:<32} {m.killed:>7} {m.tested:>6} {m.score:>6.1f}%   "
            f"{len(m.survivors)} ({known})"
        )
    killed, tested = sum(m.killed for m in modules), sum(m.tested for m in modules)
    print(f"{'all':<32} {killed:>7} {tested:>6} {100.0 * killed / max(tested, 1):>6.1f}%")
    if args.survivors:
        for m in modules:
            for name in m.survivors:
                reason = equivalent.get(name.split(" ")[0])
                print(f"  {name}" + (f"  — equivalent: {reason}" if reason else ""))
        print("See one with: .venv/bin/mutmut show <name>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
