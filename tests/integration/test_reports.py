"""The improvement report against a fixture counted by hand.

Seven complaints accepted between Mon 28 Sep and Sun 4 Oct 2026 (Beijing time), around the
National Day holiday: 1–7 Oct are off, Sat 10 Oct is an adjusted working day. So "3 working days"
from Mon 28 Sep ends on Thu 8 Oct, and from Fri 2 Oct on Sat 10 Oct. One complaint accepted
later lies outside the period. The report is read on Fri 16 Oct at noon.

Every expected figure below was worked out by hand from the default policy
(shared/policy/default.toml) and, for the re-analysis, from STRICT below; the comments say how.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from services.callback.main import create_app as create_callback_app
from shared.domain.clock import FixedClock
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import TokenFactory, intake_body
from tests.integration.conftest import Api, catch_up, serving
from tests.integration.test_investigation import ASSIGN, FINDINGS, REPLY, RESOLUTION

PERIOD = {"from": "2026-09-28T00:00:00+08:00", "to": "2026-10-05T00:00:00+08:00"}
REPORTED_AT = "2026-10-16T12:00"


def beijing(text: str) -> datetime:
    return datetime.fromisoformat(f"{text}:00+08:00")


def intake(name: str, **overrides: Any) -> dict[str, Any]:
    number = f"1390000{ord(name):04d}"
    return intake_body(
        customer={
            "id": f"cust-{name}",
            "name": "王芳",
            "phone": number,
            **overrides.pop("vip", {}),
        },
        service_number=number,
        occurred_at="2026-09-20T08:00:00+08:00",
        **overrides,
    )


def assign(department: str, complexity: str = "simple") -> dict[str, Any]:
    return {**ASSIGN, "department": department, "complexity": complexity}


def findings(root_cause: str) -> dict[str, Any]:
    return {**FINDINGS, "root_cause": root_cause}


SATISFIED = {"satisfaction": "satisfied", "resolved": True, "comments": "好"}

#: name -> (accepted at, intake, [(time, path, body)]). Outcomes under the default policy:
FIXTURE: dict[str, tuple[str, dict[str, Any], list[tuple[str, str, dict[str, Any]]]]] = {
    # Mobile network, Tue 29 Sep 10:00. investigation 72 h -> 2 Oct 10:00: met 30 Sep.
    # reply 2 working days -> 30 Sep, 8 Oct: due 8 Oct 23:59:59, met 8 Oct 15:00 (a calendar
    # count would say missed). operator_answer 15 days: met. Satisfied, archived.
    "A": (
        "2026-09-29T10:00",
        intake("A"),
        [
            ("2026-09-29T11:00", "assignment", assign("network-ops")),
            ("2026-09-30T09:00", "findings", findings("base_station_fault")),
            ("2026-09-30T10:00", "resolution", RESOLUTION),
            ("2026-10-08T15:00", "reply", REPLY),
            ("2026-10-09T10:00", "callback", SATISFIED),
            ("2026-10-09T11:00", "archive", {"summary": "已修复"}),
        ],
    ),
    # Mobile network, Wed 30 Sep 16:00. investigation -> 3 Oct 16:00: missed (8 Oct).
    # reply -> 8 Oct, 9 Oct: due 9 Oct 23:59:59, missed (Sat 10 Oct). operator_answer met.
    # Dissatisfied (still resolved) -> escalated.
    "B": (
        "2026-09-30T16:00",
        intake("B"),
        [
            ("2026-09-30T17:00", "assignment", assign("network-ops")),
            ("2026-10-08T10:00", "findings", findings("base_station_fault")),
            ("2026-10-08T11:00", "resolution", RESOLUTION),
            ("2026-10-10T10:00", "reply", REPLY),
            (
                "2026-10-12T10:00",
                "callback",
                {"satisfaction": "dissatisfied", "resolved": True, "comments": "慢"},
            ),
        ],
    ),
    # Broadband billing by web, received Sun 27 Sep 20:00, accepted Mon 28 Sep 09:00.
    # acceptance 24 h from receipt: met. investigation -> 1 Oct 09:00: met 29 Sep.
    # reply 3 working days -> 29, 30 Sep, 8 Oct: missed (10 Oct). resolution 5 working days
    # -> ..., 9, 10 Oct: due 10 Oct 23:59:59, met 10 Oct 09:00. operator_answer met.
    # Basically satisfied, archived.
    "C": (
        "2026-09-28T09:00",
        intake(
            "C",
            channel="web",
            business_type="broadband",
            category="billing",
            received_at="2026-09-27T20:00:00+08:00",
        ),
        [
            ("2026-09-28T10:00", "assignment", assign("billing-center")),
            ("2026-09-29T10:00", "findings", findings("billing_error")),
            ("2026-09-29T11:00", "resolution", RESOLUTION),
            ("2026-10-10T09:00", "reply", REPLY),
            (
                "2026-10-12T10:00",
                "callback",
                {"satisfaction": "basically_satisfied", "resolved": True, "comments": "可以"},
            ),
            ("2026-10-12T11:00", "archive", {"summary": "已退费"}),
        ],
    ),
    # Urban broadband fault, Fri 2 Oct 20:00 (a holiday). repair 24 h -> 3 Oct 20:00: missed
    # (plan 9 Oct). Complex: investigation 5 working days -> 8, 9, 10, 12, 13 Oct: met 9 Oct.
    # reply and resolution of a complex complaint, 6 working days -> 14 Oct: met 12 Oct.
    # operator_answer met. One callback attempt reached nobody.
    "D": (
        "2026-10-02T20:00",
        intake("D", business_type="broadband", category="fault_repair", area="urban"),
        [
            ("2026-10-03T09:00", "assignment", assign("broadband-repair", "complex")),
            ("2026-10-09T10:00", "findings", findings("line_fault")),
            ("2026-10-09T11:00", "resolution", RESOLUTION),
            ("2026-10-12T10:00", "reply", REPLY),
            ("2026-10-13T10:00", "callback", {"reached": False, "comments": "无人接听"}),
        ],
    ),
    # Mobile billing, diamond customer, Thu 1 Oct 09:00 (a holiday). investigation 72 h ->
    # 4 Oct 09:00: met 3 Oct 20:00. reply capped at 1 working day -> 8 Oct 23:59:59: met
    # 8 Oct 16:00. resolution -> 13 Oct: met. Satisfied but unresolved -> escalated.
    "E": (
        "2026-10-01T09:00",
        intake("E", category="billing", vip={"vip_tier": "diamond"}),
        [
            ("2026-10-01T10:00", "assignment", assign("billing-center")),
            ("2026-10-03T20:00", "findings", findings("billing_error")),
            ("2026-10-03T21:00", "resolution", RESOLUTION),
            ("2026-10-08T16:00", "reply", REPLY),
            (
                "2026-10-12T10:00",
                "callback",
                {"satisfaction": "satisfied", "resolved": False, "comments": "还没退"},
            ),
        ],
    ),
    # Mobile "other", Tue 29 Sep 09:00, refused an hour later: every limit (investigation,
    # reply, resolution, operator_answer) is closed, neither met nor missed.
    "F": (
        "2026-09-29T09:00",
        intake("F", category="other"),
        [
            (
                "2026-09-29T10:00",
                "refusal",
                {"reason": "out_of_scope", "explanation": "第三方业务", "redirect": "请联系商家"},
            ),
        ],
    ),
    # A's customer again, Sat 3 Oct 10:00: a repeat, left untouched. investigation -> 6 Oct:
    # missed; reply 2 working days -> 9 Oct: missed; operator_answer -> 18 Oct: running.
    "H": ("2026-10-03T10:00", intake("A"), []),
    # Outside the period.
    "G": ("2026-10-12T09:00", intake("G"), []),
}

ROLES = {
    "refusal": "agent",
    "callback": "callback",
    "archive": "callback",
    "assignment": "supervisor",
}


async def drive(clock: FixedClock, api: Api, inv: Api, cb: Api) -> None:
    apps = {"refusal": api, "callback": cb, "archive": cb}
    for name, (accepted, body, steps) in FIXTURE.items():
        clock.now = beijing(accepted)
        created = await api.accept(body)
        assert created.status_code == 201, (name, created.text)
        cid = created.json()["id"]
        for when, path, step in steps:
            clock.now = beijing(when)
            app = apps.get(path, inv)
            role = ROLES.get(path, "investigator")
            who = ASSIGN["investigator"] if role == "investigator" else f"{role}-9"  # the owner
            done = await app.client.post(
                f"/complaints/{cid}/{path}", json=step, headers=app.headers(role, who)
            )
            assert done.status_code == 200, (name, path, done.text)
    clock.now = beijing(REPORTED_AT)


async def report(
    cb: Api, store: ComplaintStore, role: str = "analyst", **params: str
) -> dict[str, Any]:
    await catch_up(store, SummaryProjection(store))
    answer = await cb.get("/reports/improvement", role, **{**PERIOD, **params})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def by(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows}


def figures(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["met"], row["missed"], row["running"], row["on_time_rate"]


async def test_report_matches_the_hand_count(
    api: Api, inv: Api, cb: Api, clock: FixedClock, store: ComplaintStore
) -> None:
    await drive(clock, api, inv, cb)
    got = await report(cb, store)

    assert got["complaints"] == 7  # G lies outside the period
    assert got["counts"]["category"] == {
        "billing": 2,
        "fault_repair": 1,
        "network_coverage": 3,
        "other": 1,
    }
    assert got["counts"]["business_type"] == {"broadband": 2, "mobile": 5}
    assert got["counts"]["channel"] == {"hotline": 6, "web": 1}
    assert got["counts"]["vip_tier"] == {"diamond": 1, "none": 6}
    assert got["counts"]["department"] == {
        "billing-center": 2,
        "broadband-repair": 1,
        "network-ops": 2,
        "unassigned": 2,
    }
    assert got["counts"]["root_cause"] == {
        "base_station_fault": 2,
        "billing_error": 2,
        "line_fault": 1,
        "not_recorded": 2,
    }
    assert got["counts"]["status"] == {
        "accepted": 1,
        "archived": 2,
        "escalated": 2,
        "refused": 1,
        "replied": 1,
    }
    assert got["repeat_rate"] == {"complaints": 7, "repeats": 1, "rate": 0.1429}
    assert got["escalated"] == 2  # B dissatisfied, E unresolved
    assert got["satisfaction"] == {
        "callbacks": 4,  # A, B, C, E; D's attempt reached nobody
        "satisfied": 2,
        "basically_satisfied": 1,
        "dissatisfied": 1,
        "satisfaction_rate": 0.75,
        "resolved_rate": 0.75,  # E said unresolved
        "unreached_attempts": 1,
    }

    # F was refused: counted on its own, in no on-time figure.
    assert got["refused"] == {"complaints": 1, "by_reason": {"out_of_scope": 1}}
    assert got["extensions"] == {"complaints": 0, "limits": 0}
    limits = by(got["time_limits"]["limits"], "limit")
    assert figures(limits["acceptance"]) == (1, 0, 0, 1.0)  # C
    assert figures(limits["investigation"]) == (4, 2, 0, 0.6667)  # B and H missed
    assert limits["investigation"]["closed"] == 0 and limits["investigation"]["extended"] == 0
    assert figures(limits["reply"]) == (3, 3, 0, 0.5)  # A, D (complex: 6 days), E met
    assert figures(limits["resolution"]) == (3, 0, 0, 1.0)  # C, D, E
    assert limits["resolution"]["target"] == 0.98 and limits["resolution"]["gap"] == 0.02
    assert figures(limits["repair"]) == (0, 1, 0, 0.0)  # D
    assert figures(limits["operator_answer"]) == (5, 0, 1, 1.0)  # H still running
    # After the reply: 2 working days to call back. A (due Sat 10 Oct), B (Tue 13), C (Tue 13)
    # met; D reached nobody by Wed 14; E was called on Mon 12, due Sat 10: late.
    assert figures(limits["callback"]) == (3, 2, 0, 0.6)
    # A and C were content: archived the same day, within 5 working days.
    assert figures(limits["archive"]) == (2, 0, 0, 1.0)
    # B and E went up on Mon 12 Oct 10:00: nobody was named by 14:00, nor any decision made
    # by Thu 15 Oct (3 working days); on Fri 16 Oct both are missed.
    assert figures(limits["escalation_assignment"]) == (0, 2, 0, 0.0)
    assert figures(limits["escalation_review"]) == (0, 2, 0, 0.0)
    assert got["time_limits"]["policy_versions"] == ["2026.2"]

    rules = {(r["limit"], r["rule"]): r for r in got["time_limits"]["rules"]}
    assert figures(rules["reply", "2 working_days"]) == (1, 2, 0, 0.3333)  # A / B, H (mobile)
    assert rules["reply", "2 working_days"]["closed"] == 0  # F, refused, is not counted
    assert figures(rules["reply", "3 working_days"]) == (0, 1, 0, 0.0)  # C
    assert figures(rules["reply", "6 working_days"]) == (1, 0, 0, 1.0)  # D, complex
    assert figures(rules["reply", "1 working_days"]) == (1, 0, 0, 1.0)  # E, the VIP cap
    assert figures(rules["investigation", "72 hours"]) == (3, 2, 0, 0.6)
    assert figures(rules["investigation", "5 working_days"]) == (1, 0, 0, 1.0)  # D, complex
    assert "seed 004" in rules["reply", "2 working_days"]["source"]

    # Weakest links: every decided deadline of a group against its mean target, furthest
    # below first. unassigned: F's are closed, H missed 2 of 2: -1. network-ops (A 5 of 5, B 2
    # of 6): 7/11. broadband-repair (D): 4 of 6 met against 5.98/6. billing-center (C 6 of 7,
    # E 4 of 7) 10/14 against 13.96/14.
    weakest = got["time_limits"]["weakest_links"]
    assert [(g["group"], g["gap"]) for g in weakest["departments"]] == [
        ("unassigned", -1.0),
        ("network-ops", -0.3636),
        ("broadband-repair", -0.33),
        ("billing-center", -0.2829),
    ]
    # network_coverage (A, B, H) 7 of 13; fault_repair as D; billing as billing-center;
    # other (F) is refused and not counted.
    assert [(g["group"], g["gap"]) for g in weakest["categories"]] == [
        ("network_coverage", -0.4615),
        ("fault_repair", -0.33),
        ("billing", -0.2829),
    ]

    # 考核: every group against its targets. An investigator and a department answer for the
    # handling's limits only (investigation, reply, resolution, repair, the operator's answer):
    # inv-42 handled A-E, 15 of 19 met against 18.94/19 (C's acceptance was the intake desk's,
    # the callbacks the callback agents', the escalation limits the province's); H was never
    # assigned. By department: network-ops (A, B) 4 of 6; broadband-repair (D) 4 of 5 against
    # 4.98; billing-center (C, E) 7 of 8 against 7.96. By area and channel every limit counts:
    # D is urban, the others have none (17 of 27 against 26.96); only C came by web (6 of 7).
    # By the level a limit ran at: B's and E's escalation limits (4 missed) ran at the
    # provincial level; the rest at the city level, 21 of 29 met against 28.94.
    held = got["time_limits"]["accountability"]
    ranked = {name: [(g["group"], g["gap"]) for g in groups] for name, groups in held.items()}
    assert ranked == {
        "investigator": [("unassigned", -1.0), ("inv-42", -0.2074)],
        "department": [
            ("unassigned", -1.0),
            ("network-ops", -0.3333),
            ("broadband-repair", -0.196),
            ("billing-center", -0.12),
        ],
        "area": [("unknown", -0.3689), ("urban", -0.33)],
        "channel": [("hotline", -0.4215), ("web", -0.14)],
        "level": [("provincial", -1.0), ("city", -0.2738)],
    }
    assert figures(by(held["investigator"], "group")["inv-42"]) == (15, 4, 0, 0.7895)

    # seed 004's averages: D's repair (urban) took from Fri 2 Oct 20:00 to its plan on Fri
    # 9 Oct 11:00, 159 hours; no rural broadband fault in the period.
    assert got["averages"] == [
        {
            "group": "broadband, towns",
            "limit": "repair",
            "complaints": 1,
            "unfinished": 0,
            "average_hours": 159.0,
            "target_hours": 24.0,
            "within_target": False,
            "source": "seed 004: 城镇平均值≤24小时, broadband repair in towns 24 h on average",
        },
        {
            "group": "broadband, rural",
            "limit": "repair",
            "complaints": 0,
            "unfinished": 0,
            "average_hours": None,
            "target_hours": 36.0,
            "within_target": None,
            "source": "seed 004: 农村平均值≤36小时, broadband repair in rural areas 36 h"
            " on average",
        },
    ]

    # Any past period: the first three days hold A, B, C and F only.
    early = await report(cb, store, **{"to": "2026-10-01T00:00:00+08:00"})
    assert early["complaints"] == 4
    assert early["counts"]["category"] == {"billing": 1, "network_coverage": 2, "other": 1}


#: A stricter draft: shorter investigation, reply within one working day for everyone,
#: resolution within four, acceptance within 12 hours; no repair or operator_answer limit.
STRICT = """
version = "strict-draft"
timezone = "Asia/Shanghai"

[[limit]]
name = "acceptance"
applies = { channel = ["web", "app", "email", "social_media", "letter"] }
start = "received"
amount = 12
unit = "hours"
met_by = ["Accepted"]

[[limit]]
name = "investigation"
amount = 48
unit = "hours"
met_by = ["FindingsRecorded"]
pausable = true

[[limit]]
name = "investigation"
applies = { complexity = ["complex"] }
amount = 4
unit = "working_days"
met_by = ["FindingsRecorded"]

[[limit]]
name = "reply"
amount = 1
unit = "working_days"
met_by = ["Replied"]

[[limit]]
name = "resolution"
applies = { category = ["billing", "service_attitude", "business_handling", "fault_repair",
    "other"] }
amount = 4
unit = "working_days"
met_by = ["Replied"]
target = 0.98
"""


@pytest.fixture
async def strict_cb(
    settings: Settings, clock: FixedClock, token: TokenFactory, tmp_path: Path
) -> Any:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "strict.toml").write_text(STRICT, encoding="utf-8")
    strict = settings.model_copy(update={"policy_dir": tmp_path / "policies"})
    async with serving(create_callback_app(strict, clock=clock), token) as client:
        yield client


async def test_reanalysis_under_a_stricter_policy(
    api: Api, inv: Api, strict_cb: Api, clock: FixedClock, store: ComplaintStore
) -> None:
    await drive(clock, api, inv, strict_cb)
    got = await report(strict_cb, store, role="regulator", policy="strict-draft")

    # The rules that applied are unchanged by asking for another policy.
    applied = by(got["time_limits"]["limits"], "limit")
    assert figures(applied["reply"]) == (3, 3, 0, 0.5)

    again = got["reanalysis"]
    assert again["policy"] == "strict-draft"
    assert again["time_limits"]["policy_versions"] == ["strict-draft"]
    limits = by(again["time_limits"]["limits"], "limit")
    # C accepted 13 h after receipt.
    assert figures(limits["acceptance"]) == (0, 1, 0, 0.0)
    # 48 h: A (30 Sep < 1 Oct 10:00), C met; B, E (3 Oct 20:00 > 3 Oct 09:00), H missed;
    # D complex, 4 working days -> 12 Oct: met 9 Oct. F refused: closed.
    assert figures(limits["investigation"]) == (3, 3, 0, 0.5)
    # 1 working day: only E (due 8 Oct, replied 8 Oct 16:00) is in time.
    assert figures(limits["reply"]) == (1, 5, 0, 0.1667)
    # 4 working days: C due 9 Oct, replied 10 Oct: missed; D due 12 Oct: met; E met.
    assert figures(limits["resolution"]) == (2, 1, 0, 0.6667)
    assert "repair" not in limits and "operator_answer" not in limits
    assert "callback" not in limits  # the draft has no limits after the reply

    change = {
        row["limit"]: (row["applied"], row["reanalysed"], row["change"])
        for row in again["comparison"]
    }
    assert change == {
        "acceptance": (1.0, 0.0, -1.0),
        "archive": (1.0, None, None),
        "callback": (0.6, None, None),
        "escalation_assignment": (0.0, None, None),
        "escalation_review": (0.0, None, None),
        "investigation": (0.6667, 0.5, -0.1667),
        "operator_answer": (1.0, None, None),
        "repair": (0.0, None, None),
        "reply": (0.5, 0.1667, -0.3333),
        "resolution": (1.0, 0.6667, -0.3333),
    }


async def test_the_same_policy_reproduces_the_figures_that_applied(
    api: Api, inv: Api, cb: Api, clock: FixedClock, store: ComplaintStore
) -> None:
    await drive(clock, api, inv, cb)
    got = await report(cb, store, policy="2026.2")
    assert got["reanalysis"]["time_limits"] == got["time_limits"]
    assert all(row["change"] == 0 for row in got["reanalysis"]["comparison"])


async def test_csv_carries_the_same_figures(
    api: Api, inv: Api, cb: Api, clock: FixedClock, store: ComplaintStore
) -> None:
    await drive(clock, api, inv, cb)
    await report(cb, store)
    answer = await cb.client.get(
        "/reports/improvement",
        params={**PERIOD, "policy": "2026.2"},
        headers=cb.headers("supervisor", Accept="text/csv"),
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    value = {
        (r["policy"], r["section"], r["group"], r["key"], r["metric"]): r["value"] for r in rows
    }
    assert value["applied", "count", "category", "network_coverage", "complaints"] == "3"
    assert value["applied", "limit", "reply", "", "on_time_rate"] == "0.5"
    assert value["applied", "satisfaction", "", "", "satisfaction_rate"] == "0.75"
    assert value["2026.2", "comparison", "reply", "", "change"] == "0.0"
    assert value["applied", "weakest_department", "broadband-repair", "", "gap"] == "-0.33"
    assert value["applied", "accountability_investigator", "inv-42", "", "gap"] == "-0.2074"
    assert value["applied", "accountability_level", "provincial", "", "missed"] == "4"
    assert value["applied", "refused", "reason", "out_of_scope", "complaints"] == "1"
    assert value["applied", "average", "repair", "broadband, towns", "average_hours"] == "159.0"

    # The same, asked for in the query (a generated client sets no Accept of its own).
    asked = await cb.client.get(
        "/reports/improvement",
        params={**PERIOD, "policy": "2026.2", "format": "csv"},
        headers=cb.headers("supervisor"),
    )
    assert asked.headers["content-type"].startswith("text/csv") and asked.text == answer.text
    json_anyway = await cb.client.get(
        "/reports/improvement",
        params={**PERIOD, "format": "json"},
        headers=cb.headers("supervisor", Accept="text/csv"),
    )
    assert json_anyway.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-10-05T00:00:00+08:00", "to": "2026-10-01T00:00:00+08:00"}, "to"),
        ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),  # too long
        ({"from": "2026-10-01"}, "from"),  # no offset
        ({"policy": "no-such-version"}, "policy"),
    ],
)
async def test_bad_report_requests_name_the_field(
    cb: Api, params: dict[str, str], field: str
) -> None:
    answer = await cb.get("/reports/improvement", "analyst", **params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == [f"query.{field}"]


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        ("text/csv", True),
        ("text/csv;q=0.9, application/json;q=0.5", True),
        ("application/json, text/csv;q=0", False),
        ("application/json;q=1, text/csv;q=0.5", False),
        ("*/*", False),
    ],
)
async def test_csv_is_served_when_the_client_prefers_it(cb: Api, accept: str, csv: bool) -> None:
    answer = await cb.client.get(
        "/reports/improvement", headers=cb.headers("analyst", Accept=accept)
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv" if csv else "application/json")
    if csv:
        assert answer.headers["content-disposition"].startswith("attachment; filename=")


async def test_a_paused_limit_is_running_not_missed(
    api: Api, inv: Api, cb: Api, clock: FixedClock, store: ComplaintStore
) -> None:
    # Mon 2 Nov 2026: paused the same day and still paused on 20 Nov.
    clock.now = beijing("2026-11-02T10:00")
    cid = (await api.accept(intake("P"))).json()["id"]
    paused = await inv.client.post(
        f"/complaints/{cid}/pause",
        json={"reason": "等待客户提供缴费凭证"},
        headers=inv.headers("supervisor"),  # nobody is assigned yet: a supervisor pauses it
    )
    assert paused.status_code == 200, paused.text
    clock.now = beijing("2026-11-20T12:00")
    await catch_up(store, SummaryProjection(store))
    got = (
        await cb.get(
            "/reports/improvement",
            "analyst",
            **{"from": "2026-11-01T00:00:00+08:00", "to": "2026-11-08T00:00:00+08:00"},
        )
    ).json()
    limits = by(got["time_limits"]["limits"], "limit")
    # The investigation limit is pausable: standing still, not missed. The mobile-network
    # reply and the operator's 15 days are not pausable: both passed.
    assert figures(limits["investigation"]) == (0, 0, 1, None)
    assert limits["investigation"]["target"] == 1.0
    assert figures(limits["reply"]) == (0, 1, 0, 0.0)
    assert figures(limits["operator_answer"]) == (0, 1, 0, 0.0)


@pytest.mark.parametrize(
    ("role", "status"),
    [
        ("analyst", 200),
        ("supervisor", 200),
        ("regulator", 200),
        ("admin", 200),
        ("agent", 403),
        ("callback", 403),
        ("investigator", 403),
    ],
)
async def test_who_may_read_reports(cb: Api, role: str, status: int) -> None:
    assert (await cb.get("/reports/improvement", role)).status_code == status


async def test_extended_complaints_are_counted_apart(
    api: Api, inv: Api, cb: Api, clock: FixedClock, store: ComplaintStore
) -> None:
    # A complex fixed-line billing complaint, Mon 2 Nov 2026: investigation first due Mon 9
    # Nov (5 working days), reply and resolution Tue 10 Nov (6). Extended to Thu 12 Nov 18:00,
    # replied Wed 11 Nov: every moved limit met by its new date.
    clock.now = beijing("2026-11-02T10:00")
    cid = (await api.accept(intake("X", business_type="fixed_line", category="billing"))).json()[
        "id"
    ]
    steps = [
        ("2026-11-02T10:30", "assignment", assign("billing-center", "complex")),
        (
            "2026-11-02T11:00",
            "extension",
            {
                "reason": "需调取第三方账单",
                "new_due_at": "2026-11-12T18:00:00+08:00",
                "progress_notice": "预计 11 月 12 日前答复。",
            },
        ),
        ("2026-11-11T10:00", "findings", {**findings("billing_error"), "upheld": False}),
        ("2026-11-11T11:00", "reply", REPLY),
    ]
    for when, path, body in steps:
        clock.now = beijing(when)
        role = ROLES.get(path, "investigator")
        done = await inv.client.post(
            f"/complaints/{cid}/{path}", json=body, headers=inv.headers(role, "inv-42")
        )
        assert done.status_code == 200, (path, done.text)
    clock.now = beijing("2026-11-20T12:00")
    got = await report(
        cb, store, **{"from": "2026-11-01T00:00:00+08:00", "to": "2026-11-08T00:00:00+08:00"}
    )
    assert got["extensions"] == {"complaints": 1, "limits": 3}
    limits = by(got["time_limits"]["limits"], "limit")
    for name in ("investigation", "reply", "resolution"):
        assert figures(limits[name]) == (1, 0, 0, 1.0), name
        assert limits[name]["extended"] == 1, name
    assert limits["operator_answer"]["extended"] == 0


async def test_escalations_are_counted_by_trigger_and_level(
    api: Api, inv: Api, cb: Api, clock: FixedClock, store: ComplaintStore
) -> None:
    """B (dissatisfied) and E (unresolved) went up once each, from the callback, to the
    province; the CSV says the same."""
    await drive(clock, api, inv, cb)
    got = await report(cb, store)
    assert got["escalations"] == {
        "total": 2,
        "by_trigger": {"customer_dissatisfied": 2},
        "by_level": {"provincial": 2},
        "by_trigger_and_level": [
            {"trigger": "customer_dissatisfied", "level": "provincial", "escalations": 2}
        ],
    }
    answer = await cb.get("/reports/improvement", "analyst", **PERIOD, format="csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    value = {(r["section"], r["group"], r["key"]): r["value"] for r in rows}
    assert value["escalations", "", ""] == "2"
    assert value["escalations", "trigger", "customer_dissatisfied"] == "2"
    assert value["escalations", "level", "provincial"] == "2"
    assert value["escalations", "trigger/level", "customer_dissatisfied/provincial"] == "2"
