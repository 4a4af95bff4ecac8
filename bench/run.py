"""`make bench` and `make bench-quick`: how fast the services are, side by side with the raw
limit (asyncpg on the same PostgreSQL, in the same run) and the obvious alternative (the
`eventsourcing` library's own Application, in-process).

Every figure that has a comparison is a ratio taken in one run, repeated; the report gives
the median and the spread (lowest–highest). Load comes from `wrk` with a Lua script, whose
CPU share is reported. Results: `bench/results/<mode>.json` (and `latest.json`), a table in
`BENCHMARKS.md`, a chart `bench/results/<mode>.png`, and in full mode a py-spy profile of the
intake path summarised in `BENCHMARKS.md`.

Nothing here asserts a speed: a missed goal is reported, with by how much.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import psutil

from bench import catchup, peer, profile, report, trips
from bench.scale import INVESTIGATOR, Seed, Stage, seed_bulk
from bench.scale import ctx as bench_ctx
from shared.cli.run import free_port, service_command, stop_process, wait_ready
from shared.domain.codes import Complexity
from shared.domain.complaint import Complaint
from shared.domain.context import CommandContext
from shared.domain.policy import Policy
from shared.http.auth import mint_token
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.postgres import create_database, drop_database, postgres_server

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WRK_DIR = ROOT / "bench" / "wrk"
SECRET = "bench-secret-0123456789-0123456789-abcdef"
SERVICES = ("intake", "investigation", "escalation", "callback")


@dataclass(frozen=True)
class Plan:
    name: str
    concurrencies: tuple[int, ...]
    seconds: int  # per wrk point
    repeats: int
    rebuild_sizes: tuple[int, ...]
    evidence_complaints: int
    raw_seconds: float
    peer_seconds: float
    profile_seconds: int
    overdue_complaints: int
    sqlite_concurrencies: tuple[int, ...]
    scale_complaints: int  # ten events each


PLANS = {
    "quick": Plan("quick", (1, 8), 1, 1, (10, 100), 100, 0.5, 0.5, 2, 50, (8,), 500),
    # 2,500 complaints accepted 40 days ago, all alike: four limits each, 10,000 passed at once.
    "full": Plan(
        "full", (1, 8, 32), 3, 3, (10, 100, 1000), 2000, 1.5, 2.0, 6, 2_500, (1, 8, 32), 100_000
    ),
}


# ---------------------------------------------------------------------------- processes
def services_env(env: dict[str, str]) -> dict[str, str]:
    """The projector runs in a process of its own; the deadline watch is measured on its own
    (deadline_watch)."""
    return {
        **env,
        "COMPLAINTS_PROJECTOR_ENABLED": "false",
        "COMPLAINTS_DEADLINE_WATCH_ENABLED": "false",
    }


@contextmanager
def running_services(env: dict[str, str], logs: Path) -> Iterator[dict[str, Any]]:
    """The four services as uvicorn processes, logging at info, and the projections in a
    process of their own (`shared.cli.project`), as a deployment under load would run them:
    a projector inside a service shares that service's interpreter lock with its requests."""
    started: dict[str, Any] = {}
    env = services_env(env)
    with ExitStack() as stack:
        started["projector"] = {"url": None, "process": start_projector(env, logs)}
        stack.callback(lambda: stop_process(started["projector"]["process"]))
        for name in SERVICES:
            port = free_port()
            log = stack.enter_context((logs / f"{name}.log").open("wb"))
            process = subprocess.Popen(
                service_command(name, port, log_level="info"),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(stop_process, process)
            started[name] = {"url": f"http://127.0.0.1:{port}", "process": process, "port": port}
        for name, service in started.items():
            if service["url"]:
                _ready(name, service["port"], service["process"], logs)
        yield started


def start_projector(env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    with (logs / "projector.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "shared.cli.project"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _ready(name: str, port: int, process: subprocess.Popen[bytes], logs: Path) -> None:
    if not wait_ready(port, process, timeout=60):
        sys.exit(f"{name} did not become ready; see {logs / (name + '.log')}")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------- wrk
def wrk(
    url: str,
    script: str,
    concurrency: int,
    seconds: float,
    env: dict[str, str],
    watch: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One wrk run; its summary, its own CPU use and that of the watched processes."""
    threads = min(concurrency, 2)
    watched = {name: psutil.Process(pid) for name, pid in (watch or {}).items()}
    before = {name: sum(p.cpu_times()[:2]) for name, p in watched.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_DIR / script),
            url,
        ],
        env={**os.environ, "BENCH_THREADS": str(threads), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    summary: dict[str, Any] = json.loads(line)
    seconds_run = summary["duration_us"] / 1e6
    summary["rps"] = (summary["requests"] - summary["non_2xx"]) / seconds_run
    summary["wrk_cpu_share"] = (
        (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)
        / wall
        / (os.cpu_count() or 1)
    )
    cores = os.cpu_count() or 1
    summary["cpu_by_service"] = {
        name: (sum(p.cpu_times()[:2]) - before[name]) / wall / cores for name, p in watched.items()
    }
    summary["service_cpu_share"] = sum(summary["cpu_by_service"].values())
    if summary["non_2xx"] or summary["socket_errors"]:
        print(f"  ! {script} c={concurrency}: {summary['non_2xx']} non-2xx", file=sys.stderr)
    return summary


# ------------------------------------------------------------------------------ raw SQL
RAW_TABLE = """
CREATE TABLE IF NOT EXISTS bench_raw (
    notification_id BIGSERIAL PRIMARY KEY,
    originator_id UUID NOT NULL,
    originator_version INTEGER NOT NULL,
    topic TEXT NOT NULL,
    state BYTEA NOT NULL,
    UNIQUE (originator_id, originator_version)
)
"""


async def raw_inserts(dsn: str, concurrency: int, seconds: float, state: bytes) -> dict[str, Any]:
    """Single-row INSERT + COMMIT from `concurrency` connections: the database's own limit
    for what one acceptance must at least do."""
    connections = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    await connections[0].execute(RAW_TABLE)
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def client(conn: asyncpg.Connection) -> None:
        while time.monotonic() < stop:
            began = time.perf_counter()
            await conn.execute(
                "INSERT INTO bench_raw (originator_id, originator_version, topic, state) "
                "VALUES ($1, 1, 'bench.raw:Event', $2)",
                uuid4(),
                state,
            )
            latencies.append(time.perf_counter() - began)

    began = time.monotonic()
    await asyncio.gather(*(client(c) for c in connections))
    elapsed = time.monotonic() - began
    for conn in connections:
        await conn.close()
    return {"rps": len(latencies) / elapsed, **_percentiles(latencies)}


async def raw_fetch(dsn: str, complaint_id: UUID, seconds: float) -> dict[str, Any]:
    """Fetch a complaint's rows and decode each row's JSON: the least a rebuild must do."""
    conn = await asyncpg.connect(dsn)
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        began = time.perf_counter()
        fetched = await conn.fetch(
            "SELECT state FROM complaints_events WHERE originator_id = $1 "
            "ORDER BY originator_version",
            complaint_id,
        )
        for row in fetched:
            json.loads(row["state"])
        latencies.append(time.perf_counter() - began)
    await conn.close()
    return _percentiles(latencies)


async def settle(dsn: str, limit_seconds: float = 300) -> dict[str, float]:
    """Wait until the projections have caught up with the store, so one measurement does not
    pay for the backlog of the one before; how long that took and how many events it was."""
    conn = await asyncpg.connect(dsn)
    try:
        head = await conn.fetchval(
            "SELECT coalesce(max(notification_id), 0) FROM complaints_events"
        )
        query = (
            "SELECT coalesce(min(position), 0) FROM projection_tracking "
            "WHERE name IN ('complaint_summaries', 'audit_chain')"
        )
        behind = head - await conn.fetchval(query)
        began = time.monotonic()
        while await conn.fetchval(query) < head:
            if time.monotonic() - began > limit_seconds:
                break
            await asyncio.sleep(0.1)
        return {"events": float(behind), "seconds": time.monotonic() - began}
    finally:
        await conn.close()


async def projection_lag(
    url: str, token: str, dsn: str, rate: float, seconds: float
) -> dict[str, Any]:
    """Accept complaints at a steady `rate` and time each from its 201 to the moment the
    complaint list has caught up with its position (what `GET /complaints` shows)."""
    conn = await asyncpg.connect(dsn)
    pending: dict[int, float] = {}
    lags: list[float] = []
    sending = True

    async def watch() -> None:
        while sending or pending:
            seen = await conn.fetchval(
                "SELECT position FROM projection_tracking WHERE name = 'complaint_summaries'"
            )
            now = time.monotonic()
            for position in [p for p in pending if p <= (seen or 0)]:
                lags.append(now - pending.pop(position))
            await asyncio.sleep(0.01)

    failed = 0

    async def accept(client: httpx.AsyncClient, n: int) -> None:
        nonlocal failed
        sent = time.monotonic()  # from the request: an upper bound of commit → visible
        answer = await client.post("/complaints", json=_intake(f"lag-{n}"))
        if answer.status_code == 201:
            pending[int(answer.headers["Event-Position"])] = sent
        else:
            failed += 1

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        watcher = asyncio.create_task(watch())
        began = time.monotonic()
        tasks = []
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(accept(client, n)))
        sent_for = time.monotonic() - began
        await asyncio.gather(*tasks)
        sending = False
        try:
            async with asyncio.timeout(120):
                await watcher
        except TimeoutError:
            watcher.cancel()
    await conn.close()
    unseen = len(pending)  # not visible within 120 s: counted as 120 s
    lags += [120.0] * unseen
    return {
        "rate": len(tasks) / sent_for,
        "sent": len(tasks),
        "failed": failed,
        "unseen": unseen,
        **_percentiles(lags),
    }


async def _overdue(dsn: str) -> dict[str, int]:
    """Passed limits nobody has escalated yet (`limits`), the complaints they belong to
    (`complaints`), and escalations recorded for missed limits so far (`escalations`)."""
    conn = await asyncpg.connect(dsn)
    try:
        waiting = await conn.fetchrow(
            "SELECT count(*) AS limits, count(DISTINCT complaint_id) AS complaints "
            "FROM deadlines WHERE met_at IS NULL AND escalated_at IS NULL AND due_at < now()"
        )
        done = await conn.fetchval(
            "SELECT count(*) FROM complaints_events WHERE topic LIKE '%.SupervisorsAlerted' "
            "OR (topic LIKE '%.Escalated' AND state LIKE '%deadline_missed%')"
        )
        return {
            "limits": int(waiting["limits"]),
            "complaints": int(waiting["complaints"]),
            "escalations": int(done),
        }
    finally:
        await conn.close()


def deadline_watch(
    env: dict[str, str], dsn: str, logs: Path, settle_seconds: float
) -> dict[str, Any]:
    """Start a deadline watch when thousands of limits have passed at once: how long until
    every one is escalated, and that each complaint is escalated exactly once (one lapse, one
    escalation: the complaint goes up with every limit passed by then)."""
    before = asyncio.run(_overdue(dsn))
    port = free_port()
    watch_env = {**env, "COMPLAINTS_DEADLINE_WATCH_ENABLED": "true"}
    with (logs / "watch.log").open("wb") as log:
        process = subprocess.Popen(
            service_command("escalation", port, log_level="warning"),
            cwd=ROOT,
            env=watch_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        began = time.monotonic()
        _ready("watch", port, process, logs)
        while time.monotonic() - began < 300:
            now = asyncio.run(_overdue(dsn))
            if now["escalations"] - before["escalations"] >= before["complaints"]:
                break
            time.sleep(0.5)  # each look scans the events table: not too often
        seconds = time.monotonic() - began
        time.sleep(settle_seconds)  # a watch that escalated twice would show it now
        asyncio.run(settle(dsn))
        final = asyncio.run(_overdue(dsn))
        return {
            "deadlines": before["limits"],
            "complaints": before["complaints"],
            "seconds": seconds,
            "escalated": final["escalations"] - before["escalations"],
            "still_waiting": final["limits"],
            "rss_mb": peak_rss_mb(process.pid),
        }
    finally:
        stop_process(process)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    if not ordered:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}

    def at(q: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    return {"p50_ms": at(0.50), "p99_ms": at(0.99)}


# ------------------------------------------------------------------------------ seeding
async def seed(settings: Settings, plan: Plan, dsn: str) -> dict[str, Any]:
    """Complaints to add evidence to (in bulk), complaints accepted 40 days ago and left alone
    (in bulk: their limits have all passed), and complaints of 10/100/1,000 events to rebuild
    (through the store, command by command)."""
    now = datetime.now(UTC)
    targets, _ = await seed_bulk(
        dsn,
        settings,
        [
            Seed(
                "target",
                plan.evidence_complaints,
                plan.evidence_complaints,
                now - timedelta(hours=1),
                timedelta(minutes=30),
                Stage.ASSIGNED,
            ),
            Seed(
                "late",
                plan.overdue_complaints,
                plan.overdue_complaints,
                now - timedelta(days=40),
                timedelta(minutes=30),
                Stage.ACCEPTED,
                varied=False,
            ),
        ],
    )
    store = ComplaintStore(settings)
    await store.open()
    try:
        base = _intake("seed")
        long: dict[int, dict[str, Any]] = {}
        for size in plan.rebuild_sizes:
            ctx = bench_ctx("agent", "intake", datetime.now(UTC))
            written = await store.accept(
                {**base, "customer": {**base["customer"], "id": f"long-{size}"}}, ctx
            )
            complaint_id = written.complaint.id
            await store.execute(
                complaint_id, partial(_assign, ctx=ctx, policy=store.policy), ctx=ctx
            )
            middle = None
            for n in range(size - 2):
                ctx = bench_ctx("investigator", "investigation", datetime.now(UTC))
                await store.execute(complaint_id, partial(_evidence, n=n, ctx=ctx), ctx=ctx)
                if n == size // 2:
                    middle = ctx.at
            long[size] = {"id": complaint_id, "middle": middle or datetime.now(UTC)}
        return {"targets": targets["ids"], "long": long}
    finally:
        await store.close()


def _assign(complaint: Complaint, *, ctx: CommandContext, policy: Policy) -> None:
    complaint.assign("network", INVESTIGATOR, Complexity.SIMPLE, policy, ctx)


def _evidence(complaint: Complaint, *, n: int, ctx: CommandContext) -> None:
    complaint.add_evidence("call_record", f"CDR-{n}", "checked", ctx)


def _intake(customer: str) -> dict[str, Any]:
    return {
        "channel": "hotline",
        "customer": {"id": customer, "name": "Bench Customer", "phone": "13800000000"},
        "service_number": "13800000000",
        "business_type": "mobile",
        "category": "billing",
        "area": None,
        "occurred_at": "2026-11-20T08:30:00+08:00",
        "received_at": None,
        "description": "Billed twice for November.",
        "demand": "Refund the second charge.",
        "reply_channel": "sms",
        "evidence": [],
    }


# --------------------------------------------------------------------------------- runs
def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "low": min(values), "high": max(values)}


def bench_env(database_url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "COMPLAINTS_ENVIRONMENT": "development",
        "COMPLAINTS_DATABASE_URL": database_url,
        "COMPLAINTS_JWT_SECRET": SECRET,
        "COMPLAINTS_INDEX_KEY": "bench-index-key-0123456789",
        "COMPLAINTS_AUDIT_KEY_PATH": str(workdir / "audit.pem"),
        "COMPLAINTS_KEK_PATH": str(workdir / "key-encryption-keys"),
        "COMPLAINTS_RATE_LIMIT_PER_SECOND": "0",  # one client drives it all
        "COMPLAINTS_NOTIFICATION_GATEWAY_URL": "http://127.0.0.1:9/none",
        # Every acceptance asks for an acknowledgement: with no gateway the dispatcher would
        # keep recording failed attempts, and the bulk seed needs a store nobody writes to.
        # The benchmark measures the write path; messages are not part of it.
        "COMPLAINTS_DISPATCHER_ENABLED": "false",
    }


def raw_sqlite_inserts(
    path: Path, concurrency: int, seconds: float, state: bytes
) -> dict[str, Any]:
    """Single-row INSERT + COMMIT into the same SQLite file, WAL and synchronous=FULL as the
    store runs it, from `concurrency` threads with a connection each."""
    setup = sqlite3.connect(path)
    setup.execute(
        "CREATE TABLE IF NOT EXISTS bench_raw (id INTEGER PRIMARY KEY, originator_id TEXT, "
        "originator_version INTEGER, topic TEXT, state BLOB)"
    )
    setup.commit()
    setup.close()
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    def client() -> None:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        mine = []
        while time.monotonic() < stop:
            began = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO bench_raw (originator_id, originator_version, topic, state) "
                "VALUES (?, 1, 'bench.raw:Event', ?)",
                (str(uuid4()), state),
            )
            conn.execute("COMMIT")
            mine.append(time.perf_counter() - began)
        conn.close()
        latencies.extend(mine)

    began = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"rps": len(latencies) / (time.monotonic() - began), **_percentiles(latencies)}


def measure_sqlite(plan: Plan) -> list[dict[str, Any]]:
    """Intake on the SQLite store `make run` uses, against raw inserts into the same file."""
    workdir = Path(tempfile.mkdtemp(prefix="complaints-bench-sqlite-"))
    path = workdir / "store.sqlite3"
    env = bench_env(f"sqlite:///{path}", workdir)
    try:
        subprocess.run(
            [sys.executable, "-m", "shared.cli.setup_store"], env=env, check=True, cwd=ROOT
        )
        settings = Settings(database_url=env["COMPLAINTS_DATABASE_URL"])
        token = mint_token(
            settings, "bench-agent", ["agent"], timedelta(hours=1), datetime.now(UTC)
        )
        rows_by_c = []
        with running_services(env, workdir) as services:
            pids = {name: s["process"].pid for name, s in services.items()}
            url = services["intake"]["url"]
            state = b""
            for c in plan.sqlite_concurrencies:
                rows = []
                for run in range(plan.repeats):
                    print(f"sqlite intake c={c} run {run + 1}", flush=True)
                    ours = wrk(
                        url,
                        "load.lua",
                        c,
                        plan.seconds,
                        {"BENCH_TOKEN": token, "BENCH_MODE": "intake", "BENCH_RUN": f"s{c}-{run}"},
                        watch=pids,
                    )
                    if not state:
                        state = _sqlite_state(path)
                    raw = raw_sqlite_inserts(path, c, plan.raw_seconds, state)
                    rows.append({"ours": ours, "raw": raw})
                rows_by_c.append(_compare(c, rows, "ours"))
        return rows_by_c
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _sqlite_state(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT state FROM stored_events WHERE topic LIKE '%Accepted' ORDER BY rowid LIMIT 1"
        ).fetchone()
        return bytes(row[0])
    finally:
        conn.close()


def measure(plan: Plan, admin_url: str) -> dict[str, Any]:
    dsn = create_database(admin_url)
    workdir = Path(tempfile.mkdtemp(prefix="complaints-bench-"))
    env = bench_env(dsn, workdir)
    os.environ.update(env)  # this process seeds the same store as the services use
    settings = Settings()
    try:
        subprocess.run(
            [sys.executable, "-m", "shared.cli.setup_store"], env=env, check=True, cwd=ROOT
        )
        now = datetime.now(UTC)
        tokens = {
            role: mint_token(settings, f"bench-{role}", [role], timedelta(hours=2), now)
            for role in ("agent", "investigator", "regulator", "analyst")
        }
        print("round trips per acceptance…", flush=True)
        counted = trips.apart(admin_url)
        print("projector catch-up…", flush=True)
        caught_up = catchup.apart(admin_url, 2000 if plan.name == "full" else 200)
        print("seeding…", flush=True)
        seeded = asyncio.run(seed(settings, plan, dsn))
        ids_file = workdir / "evidence-ids.txt"
        ids_file.write_text("\n".join(str(i) for i in seeded["targets"]) + "\n")
        results: dict[str, Any] = {
            "intake": [],
            "evidence": [],
            "rebuild": [],
            "trips": counted,
            "catchup": caught_up,
        }
        with running_services(env, workdir) as services:
            pids = {name: s["process"].pid for name, s in services.items()}
            intake_url = services["intake"]["url"]
            accept_state = asyncio.run(
                _stored_state(dsn, seeded["long"][min(plan.rebuild_sizes)]["id"])
            )
            backlogs: list[dict[str, float]] = [asyncio.run(settle(dsn))]
            print(f"deadline watch: {plan.overdue_complaints} overdue complaints", flush=True)
            results["deadline_watch"] = deadline_watch(services_env(env), dsn, workdir, 3.0)
            for c in plan.concurrencies:
                rows = []
                for run in range(plan.repeats):
                    print(f"intake c={c} run {run + 1}", flush=True)
                    backlogs.append(asyncio.run(settle(dsn)))
                    ours = wrk(
                        intake_url,
                        "load.lua",
                        c,
                        plan.seconds,
                        {
                            "BENCH_TOKEN": tokens["agent"],
                            "BENCH_MODE": "intake",
                            "BENCH_RUN": f"{c}-{run}",
                        },
                        watch=pids,
                    )
                    backlogs.append(asyncio.run(settle(dsn)))
                    raw = asyncio.run(raw_inserts(dsn, c, plan.raw_seconds, accept_state))
                    backlogs.append(asyncio.run(settle(dsn)))
                    evidence = wrk(
                        services["investigation"]["url"],
                        "load.lua",
                        c,
                        plan.seconds,
                        {
                            "BENCH_TOKEN": tokens["investigator"],
                            "BENCH_MODE": "evidence",
                            "BENCH_IDS": str(ids_file),
                            "BENCH_RUN": f"{c}-{run}",
                        },
                        watch=pids,
                    )
                    rows.append({"ours": ours, "raw": raw, "evidence": evidence})
                results["intake"].append(_compare(c, rows, "ours"))
                results["evidence"].append(_compare(c, rows, "evidence"))
            best = max(row["rps"]["median"] for row in results["intake"])
            print(f"projection lag at {best / 2:.0f}/s", flush=True)
            backlogs.append(asyncio.run(settle(dsn)))
            results["projection_lag"] = asyncio.run(
                projection_lag(intake_url, tokens["agent"], dsn, best / 2, plan.seconds * 2)
            )
            for size, long in seeded["long"].items():
                print(f"rebuild {size} events", flush=True)
                backlogs.append(asyncio.run(settle(dsn)))
                path = f"/complaints/{long['id']}"
                ours = wrk(
                    intake_url,
                    "load.lua",
                    1,
                    plan.seconds,
                    {"BENCH_TOKEN": tokens["agent"], "BENCH_MODE": "get", "BENCH_PATH": path},
                )
                raw = asyncio.run(raw_fetch(dsn, long["id"], plan.raw_seconds))
                as_of = urllib.parse.quote(long["middle"].isoformat())
                travel = wrk(
                    intake_url,
                    "load.lua",
                    1,
                    plan.seconds,
                    {
                        "BENCH_TOKEN": tokens["agent"],
                        "BENCH_MODE": "get",
                        "BENCH_PATH": f"{path}?as_of={as_of}",
                    },
                )
                results["rebuild"].append(
                    {
                        "events": size,
                        "ours_p50_ms": ours["p50_us"] / 1000,
                        "ours_p99_ms": ours["p99_us"] / 1000,
                        "raw_p50_ms": raw["p50_ms"],
                        "raw_p99_ms": raw["p99_ms"],
                        "as_of_p50_ms": travel["p50_us"] / 1000,
                        "as_of_p99_ms": travel["p99_us"] / 1000,
                        "errors": ours["non_2xx"]
                        + ours["socket_errors"]
                        + travel["non_2xx"]
                        + travel["socket_errors"],
                    }
                )
            if plan.profile_seconds:
                print("profiling intake", flush=True)
                results["profile"] = profile.record(
                    services["intake"]["process"].pid,
                    plan.profile_seconds,
                    RESULTS / f"intake-profile-{plan.name}.txt",
                    lambda: wrk(
                        intake_url,
                        "load.lua",
                        8,
                        plan.profile_seconds,
                        {
                            "BENCH_TOKEN": tokens["agent"],
                            "BENCH_MODE": "intake",
                            "BENCH_RUN": "profile",
                        },
                    ),
                )
            results["projection_backlogs"] = backlogs
            print("peer: the library's Application in-process", flush=True)
            results["peer"] = peer.measure(dsn, plan.peer_seconds, (1, 8))
            # The seed writes the projections' rows itself: no projector meanwhile.
            print(f"scale: seeding {plan.scale_complaints:,} complaints", flush=True)
            backlogs.append(asyncio.run(settle(dsn)))
            projector_peak = peak_rss_mb(services["projector"]["process"].pid)
            stop_process(services["projector"]["process"])
            scale = asyncio.run(seed_bulk(dsn, settings, scale_seeds(plan)))
            services["projector"]["process"] = start_projector(services_env(env), workdir)
            results["scale"] = measure_scale(
                plan, services, tokens, dsn, seeded, scale, results, workdir
            )
            results["memory_mb"] = {
                name: peak_rss_mb(s["process"].pid) for name, s in services.items()
            }
            results["memory_mb"]["projector"] = max(
                projector_peak, results["memory_mb"]["projector"]
            )
        return results
    finally:
        drop_database(admin_url, dsn)
        shutil.rmtree(workdir, ignore_errors=True)


# -------------------------------------------------------------------------------- scale
def scale_seeds(plan: Plan) -> list[Seed]:
    """Nine in ten complaints archived, accepted over 300 days to five days ago; the rest
    under investigation, accepted over the last two days (none of their limits has passed:
    a watch would have escalated them). Four complaints per customer."""
    archived = plan.scale_complaints * 9 // 10
    still_open = plan.scale_complaints - archived
    now = datetime.now(UTC)
    return [
        Seed(
            "scale",
            archived,
            max(1, archived // 4),
            now - timedelta(days=305),
            timedelta(days=300),
            Stage.ARCHIVED,
        ),
        Seed(
            "open",
            still_open,
            max(1, still_open // 4),
            now - timedelta(days=2),
            timedelta(hours=36),
            Stage.INVESTIGATING,
        ),
    ]


def measure_scale(
    plan: Plan,
    services: dict[str, Any],
    tokens: dict[str, str],
    dsn: str,
    seeded: dict[str, Any],
    scale: list[dict[str, Any]],
    results: dict[str, Any],
    workdir: Path,
) -> dict[str, Any]:
    """On the store seeded to scale: the audit export of it all against a raw ordered SELECT,
    the complaint list, rebuilds and intake against the same on the small store before."""
    url = services["intake"]["url"]
    out: dict[str, Any] = {
        "seed": {
            "complaints": sum(s["complaints"] for s in scale),
            "events": sum(s["events"] for s in scale),
            "customers": sum(s["customers"] for s in scale),
            "seed_seconds": scale[-1]["seed_seconds"],
        },
        "events_in_store": asyncio.run(_count_events(dsn)),
    }
    print(f"audit export of {out['events_in_store']:,} events", flush=True)
    out["export"] = export_rate(
        url, tokens, services["intake"]["process"].pid, workdir, verify=plan.name == "quick"
    )
    out["export"]["raw"] = asyncio.run(raw_select(dsn))
    seconds = max(1, plan.seconds // 2)

    def get(paths: list[str], run: str) -> dict[str, Any]:
        listed = workdir / f"paths-{run}.txt"
        listed.write_text("\n".join(paths) + "\n")
        env = {"BENCH_TOKEN": tokens["agent"], "BENCH_MODE": "get", "BENCH_PATHS": str(listed)}
        return wrk(url, "load.lua", 1, seconds, env)

    print("scale: lists, rebuilds, intake", flush=True)
    lists = {
        "newest": "/complaints",
        "status": "/complaints?status=investigating",
        "customer": "/complaints?customer_id=scale-000123",
        "overdue": "/complaints?overdue=true",
        "next page": f"/complaints?cursor={_second_page_cursor(url, tokens['agent'])}",
        "phone": f"/complaints?phone={_a_seeded_phone(url, tokens['agent'])}",
        "due within a day": "/complaints?due_before="
        + urllib.parse.quote((datetime.now(UTC) + timedelta(days=1)).isoformat()),
        "by due time": "/complaints?sort=due",
        "department, by due time": "/complaints?department=network&sort=due",
    }
    if plan.repeats > 1:
        out["list"] = {
            name: _latency(get([path], f"list-{n}")) for n, (name, path) in enumerate(lists.items())
        }
    else:  # quick: one run through them all
        out["list"] = {"all of them, mixed": _latency(get(list(lists.values()), "lists"))}
    out["rebuild"] = {
        size: _latency(get([f"/complaints/{seeded['long'][size]['id']}"], f"rebuild-{size}"))
        for size in (min(plan.rebuild_sizes), max(plan.rebuild_sizes))
    }
    ids = [i for part in scale for i in part["ids"]]
    sample = ids[:: max(1, len(ids) // 50)]
    out["rebuild_seeded"] = _latency(
        get(
            [f"/complaints/{i}" for i in sample],
            "rebuild-seeded",
        )
    )
    c = 8
    intake = wrk(
        url,
        "load.lua",
        c,
        plan.seconds,
        {"BENCH_TOKEN": tokens["agent"], "BENCH_MODE": "intake", "BENCH_RUN": "scale"},
    )
    empty = next(r for r in results["intake"] if r["concurrency"] == c)
    out["intake"] = {
        "concurrency": c,
        "rps": intake["rps"],
        "p99_ms": intake["p99_us"] / 1000,
        "errors": intake["non_2xx"] + intake["socket_errors"],
        "empty_rps": empty["rps"]["median"],
        "empty_low_rps": empty["rps"]["low"],
        "empty_p99_ms": empty["p99_ms"]["median"],
    }
    return out


def _latency(summary: dict[str, Any]) -> dict[str, float]:
    return {
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "requests": summary["requests"],
        "errors": summary["non_2xx"] + summary["socket_errors"],
    }


def _a_seeded_phone(url: str, token: str) -> str:
    """The service number of a complaint of the store (the newest), as an agent sees it."""
    headers = {"Authorization": f"Bearer {token}"}
    page = httpx.get(f"{url}/complaints?limit=1", headers=headers)
    page.raise_for_status()
    complaint_id = page.json()["items"][0]["id"]
    complaint = httpx.get(f"{url}/complaints/{complaint_id}", headers=headers)
    complaint.raise_for_status()
    return urllib.parse.quote(complaint.json()["service_number"])


def _second_page_cursor(url: str, token: str) -> str:
    answer = httpx.get(f"{url}/complaints", headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    return urllib.parse.quote(answer.json()["next_cursor"])


async def _count_events(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM complaints_events"))
    finally:
        await conn.close()


def export_rate(
    url: str, tokens: dict[str, str], pid: int, workdir: Path, *, verify: bool
) -> dict[str, Any]:
    """`GET /audit/export` of the whole store through curl (which costs little CPU): lines/s,
    and the serving process's memory sampled as it streams. With `verify`, the export is kept
    and checked by the standalone verifier against freshly signed checkpoints: the bulk seed
    must chain exactly as the projector does."""
    process = psutil.Process(pid)
    rss: list[float] = []
    streaming = threading.Event()

    def sample() -> None:
        while not streaming.is_set():
            rss.append(process.memory_info().rss / 2**20)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    kept = workdir / "export.ndjson"
    sink = f"tee {shlex.quote(str(kept))} | tail -n 1" if verify else "tail -n 1"
    began = time.monotonic()
    try:
        done = subprocess.run(
            [
                "bash",
                "-c",
                'set -o pipefail; curl -sS --fail -H "Authorization: Bearer $TOKEN" '
                f"{url}/audit/export | {sink}",
            ],
            env={**os.environ, "TOKEN": tokens["regulator"]},
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        seconds = time.monotonic() - began
        streaming.set()
        sampler.join()
    trailer = json.loads(done.stdout)["trailer"]
    result: dict[str, Any] = {
        "lines": trailer["count"],
        "seconds": seconds,
        "lines_per_s": trailer["count"] / seconds,
        "rss_start_mb": rss[0],
        "rss_peak_mb": max(rss),
        "rss_end_mb": rss[-1],
        "rss_samples": len(rss),
    }
    if verify:
        headers = {"Authorization": f"Bearer {tokens['analyst']}"}
        httpx.post(f"{url}/audit/checkpoints", headers=headers).raise_for_status()
        checkpoints = workdir / "checkpoints.json"
        checkpoints.write_text(
            httpx.get(f"{url}/audit/checkpoints", headers=headers).raise_for_status().text
        )
        key = workdir / "audit-public-key.pem"
        key.write_text(
            httpx.get(f"{url}/audit/public-key", headers=headers)
            .raise_for_status()
            .json()["public_key"]
        )
        checked = subprocess.run(
            [
                sys.executable,
                "-m",
                "shared.audit.verify",
                str(kept),
                str(checkpoints),
                "--key",
                str(key),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        result["verified"] = checked.returncode == 0
        result["verifier"] = checked.stdout.strip() or checked.stderr.strip()
        kept.unlink()
    return result


async def raw_select(dsn: str) -> dict[str, Any]:
    """Every event row in position order through one cursor: what an export must at least
    read."""
    conn = await asyncpg.connect(dsn)
    rows = 0
    try:
        began = time.monotonic()
        async with conn.transaction():
            query = (
                "SELECT notification_id, originator_id, originator_version, topic, state "
                "FROM complaints_events ORDER BY notification_id"
            )
            async for _ in conn.cursor(query, prefetch=10_000):
                rows += 1
        seconds = time.monotonic() - began
    finally:
        await conn.close()
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


async def _stored_state(dsn: str, complaint_id: UUID) -> bytes:
    """An acceptance the store wrote (sealed): what the raw inserts write, byte for byte."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT state FROM complaints_events WHERE originator_id = $1 "
            "AND originator_version = 1",
            complaint_id,
        )
        return bytes(row["state"])
    finally:
        await conn.close()


def _compare(c: int, rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Ours against the raw inserts of the same repeat: ratios, median and spread."""
    return {
        "concurrency": c,
        "rps": spread([r[key]["rps"] for r in rows]),
        "p99_ms": spread([r[key]["p99_us"] / 1000 for r in rows]),
        "raw_rps": spread([r["raw"]["rps"] for r in rows]),
        "raw_p99_ms": spread([r["raw"]["p99_ms"] for r in rows]),
        "ratio": spread([r[key]["rps"] / r["raw"]["rps"] for r in rows]),
        "p99_allowance_ms": spread([2 * r["raw"]["p99_ms"] + 5 for r in rows]),
        "wrk_cpu_share": spread([r[key]["wrk_cpu_share"] for r in rows]),
        "service_cpu_share": spread([r[key]["service_cpu_share"] for r in rows]),
        "cpu_by_service": {
            name: statistics.median(r[key]["cpu_by_service"][name] for r in rows)
            for name in rows[0][key]["cpu_by_service"]
        },
        "errors": sum(r[key]["non_2xx"] + r[key]["socket_errors"] for r in rows),
    }


def machine(admin_url: str) -> dict[str, Any]:
    async def postgres() -> dict[str, str]:
        conn = await asyncpg.connect(admin_url)
        try:
            return {
                name: str(await conn.fetchval(f"SHOW {name}"))
                for name in ("server_version", "fsync", "synchronous_commit", "max_connections")
            }
        finally:
            await conn.close()

    return {
        "postgres": asyncio.run(postgres()),
        "cpus": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=sorted(PLANS))
    args = parser.parse_args()
    plan = PLANS[args.mode]
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with postgres_server() as admin_url:
        results = measure(plan, admin_url)
        system = machine(admin_url)
    results["sqlite_intake"] = measure_sqlite(plan)
    document = {
        "mode": plan.name,
        "plan": asdict(plan),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - began, 1),
        "machine": system,
        "results": results,
    }
    for name in (f"{plan.name}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(document, indent=2) + "\n")
    report.write(document, RESULTS, ROOT / "BENCHMARKS.md")
    print(f"done in {document['seconds']} s: BENCHMARKS.md, bench/results/{plan.name}.json")


if __name__ == "__main__":
    main()
