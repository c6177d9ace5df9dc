"""Alerts on change: what a run calls for, and real delivery to a local HTTP receiver and a local SMTP server,
exactly once per change, with a reminder and a recovery. tests/web/test_alerts.py: a stalled channel delays nothing."""

from __future__ import annotations

from concurrent.futures import wait
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from app.alerts import Alerts, Channel, decide
from app.checks.base import Stage, Status
from app.config import Settings, describe_settings_error
from app.history import History
from app.notify import Smtp
from app.results import Result, Run, Verdict
from tests.pipeline.helpers import Receiver
from tests.servers import SmtpInbox

T0 = datetime(2026, 3, 1, 8, 0).astimezone()
SECRET_PATH = "/hooks/T0/B0/very-secret-path"


def result(name: str, status: Status, *, required: bool = True) -> Result:
    failed = status == Status.FAILED
    return Result(
        name=name,
        kind="postgres",
        required=required,
        status=status,
        stage=Stage.AUTH if failed else (Stage.TLS if status == Status.WARNING else None),
        cause="password authentication failed for user airia" if failed else ("expires in 5 days" if status else ""),
        remediation="check the password in the Secret" if failed else "",
        duration_ms=3.0,
        started_at=T0,
        steps=[],
        facts={},
    )


class Scene:
    """A history and alerts over a fake clock: each `run` records results and asks the alerts what to tell."""

    def __init__(self, alerts: Alerts) -> None:
        self.history = History()
        self.alerts = alerts
        self.now = T0
        alerts.clock = lambda: self.now

    def run(self, minutes: float, **statuses: Status) -> str | None:
        self.now = T0 + timedelta(minutes=minutes)
        before = None
        if self.history.states:
            before = _verdict(self.history)
        results = [result(name, status, required=name != "optional") for name, status in statuses.items()]
        changes = self.history.record(
            Run(started_at=self.now, finished_at=self.now, strict=False, results=results, pending=[])
        )
        failing = [s for s in self.history.states.values() if s.result.required and s.result.status == Status.FAILED]
        message = self.alerts.after_run(changes, before, _verdict(self.history), failing)
        return None if message is None else message.event


def _verdict(history: History) -> Verdict:
    bad = any(s.result.required and s.result.status == Status.FAILED for s in history.states.values())
    return Verdict.NOT_READY if bad else Verdict.READY


def test_what_each_run_calls_for() -> None:
    scene = Scene(Alerts([], reminder_after=timedelta(hours=1), dashboard_url="https://pod.example/"))
    ok = Status.PASSED
    assert scene.run(0, db=ok, optional=ok) is None  # first run, all well: nothing to tell
    assert scene.run(5, db=ok, optional=ok) is None
    assert scene.run(10, db=Status.FAILED, optional=ok) == "changed"
    assert scene.run(15, db=Status.FAILED, optional=ok) is None  # still failing: no repeat
    assert scene.run(40, db=Status.FAILED, optional=Status.FAILED) is None  # an optional target is not news
    assert scene.run(70, db=Status.FAILED) == "reminder"  # an hour after the last message
    assert scene.run(90, db=Status.FAILED) is None
    assert scene.run(130, db=Status.FAILED) == "reminder"
    assert scene.run(140, db=ok) == "recovered"
    assert scene.run(150, optional=Status.WARNING) == "changed"  # a warning newly appears, even on an optional target
    assert scene.run(160, optional=Status.WARNING) is None


def test_the_message_names_target_stage_cause_remediation_and_links_the_target() -> None:
    history = History()
    history.record(Run(started_at=T0, finished_at=T0, strict=False, results=[result("db", Status.PASSED)], pending=[]))
    changes = history.record(
        Run(started_at=T0, finished_at=T0, strict=False, results=[result("db", Status.FAILED)], pending=[])
    )
    message = decide(changes, Verdict.READY, Verdict.NOT_READY, [history.states["db"]], "https://pod/targets/db")
    assert message is not None
    assert message.title == "airia-test-pod: not ready"
    assert message.facts == [("Verdict", "not ready (was ready)"), ("Blocking", "db")]
    assert list(message.sections[0]) == [
        ("Target", "db (postgres)"),
        ("Status", "failed (was passed)"),
        ("Stage", "auth"),
        ("Cause", "password authentication failed for user airia"),
        ("What to do", "check the password in the Secret"),
    ]
    assert not message.good
    assert decide([], Verdict.READY, Verdict.READY, [], "") is None


def test_real_delivery_once_per_change_with_a_reminder_and_a_recovery(
    receiver: Receiver,
    smtp: tuple[int, SmtpInbox],
) -> None:
    port, inbox = smtp
    delivered: list[tuple[str, bool]] = []
    channels = [
        Channel("slack", url=f"{receiver.url}/slack{SECRET_PATH}", timeout=5),
        Channel("teams", url=f"{receiver.url}/teams{SECRET_PATH}", timeout=5),
        Channel("webhook", url=f"{receiver.url}/generic{SECRET_PATH}", timeout=5),
        Channel("email", smtp=Smtp("127.0.0.1", "pod@example.com", ["ops@example.com"], port, "none"), timeout=5),
    ]
    alerts = Alerts(
        channels,
        reminder_after=timedelta(minutes=30),
        dashboard_url="https://pod.example",
        on_delivery=lambda channel, sent: delivered.append((channel, sent)),
    )
    scene = Scene(alerts)
    events = [
        scene.run(0, db=Status.PASSED),
        scene.run(1, db=Status.FAILED),
        scene.run(2, db=Status.FAILED),
        scene.run(40, db=Status.FAILED),
        scene.run(41, db=Status.PASSED),
        scene.run(42, db=Status.PASSED),
    ]
    assert events == [None, "changed", None, "reminder", "recovered", None]
    wait(alerts.pending, timeout=10)
    alerts.close()

    assert sorted(delivered) == sorted([(c, True) for c in ("slack", "teams", "webhook", "email")] * 3)
    generic = [r.json() for r in receiver.requests if r.path.startswith("/generic")]
    assert [g["event"] for g in generic] == ["changed", "reminder", "recovered"]  # type: ignore[index]
    assert generic[0]["link"] == "https://pod.example/targets/db"  # type: ignore[index]
    assert generic[0]["sections"][0]["Cause"] == "password authentication failed for user airia"  # type: ignore[index]
    assert len([r for r in receiver.requests if r.path.startswith("/slack")]) == 3
    teams = [r.json() for r in receiver.requests if r.path.startswith("/teams")]
    assert [t["attachments"][0]["content"]["body"][0]["color"] for t in teams] == ["Attention", "Attention", "Good"]  # type: ignore[index]
    assert [m["Subject"] for m in inbox.messages] == [
        "airia-test-pod: not ready",
        "airia-test-pod: still not ready",
        "airia-test-pod: ready again",
    ]
    assert "What to do: check the password in the Secret" in inbox.messages[0].get_content()  # type: ignore[attr-defined]


def test_settings_make_the_channels_and_refuse_half_an_email_channel() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(alert_smtp_host="127.0.0.1", alert_email_to="ops@example.com")
    assert describe_settings_error(refused.value) == "e-mail alerts need TESTPOD_ALERT_EMAIL_FROM too"
    assert Alerts.from_settings(Settings()) is None
    alerts = Alerts.from_settings(
        Settings(
            alert_teams_webhook_url="https://example.invalid/teams/sig",
            alert_smtp_host="127.0.0.1",
            alert_smtp_password="smtp-pass",
            alert_email_from="pod@example.com",
            alert_email_to="a@example.com, b@example.com",
            alert_reminder_minutes=0,
        )
    )
    assert alerts is not None
    assert [c.name for c in alerts.channels] == ["teams", "email"]
    assert alerts.channels[1].smtp is not None and alerts.channels[1].smtp.recipients == [
        "a@example.com",
        "b@example.com",
    ]
    assert alerts.reminder_after is None
    alerts.close()
