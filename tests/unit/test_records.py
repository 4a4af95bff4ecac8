"""The typed records of a complaint's view name every key the aggregate records: a key they
left out would be dropped from every read (`shared/http/records.py`), so a new one in the
domain must be given its type there too."""

from __future__ import annotations

from typing import Any

from shared.domain.complaint import Complaint
from shared.http import records
from tests.unit.test_transitions import COMMANDS, POLICY, ctx, new_complaint


def keys_of(record: type) -> set[str]:
    return set(record.__required_keys__ | record.__optional_keys__)  # type: ignore[attr-defined]


def lived(*steps: str) -> Complaint:
    complaint = new_complaint(evidence=[{"kind": "call_record", "ref": "CDR-0", "summary": ""}])
    for step in steps:
        COMMANDS[step](complaint)
    return complaint


def test_every_recorded_key_has_its_type() -> None:
    full = lived(
        "assign",
        "add_evidence",
        "pause_clock",
        "resume_clock",
        "extend",
        "record_findings",
        "propose_resolution",
        "reply",
        "record_notification",
        "record_unreached_callback",
        "escalate",
        "assign_handler",
        "review",
    )
    at_headquarters = lived("escalate")  # a limit missed there alerts its supervisors
    at_headquarters.escalate_missed("investigation", POLICY, ctx(minutes=60 * 24 * 60))
    refused = lived("refuse")
    shown: dict[type, list[dict[str, Any]]] = {
        records.EvidenceRecord: list(full.evidence),
        records.Assignment: [full.assignment] if full.assignment else [],
        records.Extension: list(full.extensions),
        records.Escalation: list(full.escalations),
        records.Handler: list(full.handlers),
        records.Review: list(full.reviews),
        records.CallbackAttempt: list(full.callback_attempts),
        records.Alert: list(at_headquarters.alerts),
        records.Notification: list(full.notifications.values()),
        records.Refusal: [refused.refusal] if refused.refusal else [],
        records.CustomerShown: [full.intake["customer"]],
    }
    answered = lived("assign", "record_findings", "propose_resolution", "reply", "record_callback")
    shown[records.Findings] = [answered.findings] if answered.findings else []
    shown[records.Resolution] = [answered.resolution] if answered.resolution else []
    shown[records.RemedyRecord] = list(answered.resolution["remedies"])  # type: ignore[index]
    shown[records.Reply] = [answered.reply_sent] if answered.reply_sent else []
    shown[records.Callback] = list(answered.callbacks)
    unnamed = {
        (record.__name__, key)
        for record, seen in shown.items()
        for item in seen
        for key in item
        if key not in keys_of(record)
    }
    assert unnamed == set()
    assert all(shown.values()), [r.__name__ for r, seen in shown.items() if not seen]
