"""Notifications: payloads from one result, real delivery to a local HTTP receiver and a local SMTP server."""

from __future__ import annotations

from typing import Any

import httpx
import notify
import pytest
from notify import Result

from app.notify import email_message, slack_payload, teams_payload
from tests.pipeline.helpers import Receiver
from tests.servers import SmtpInbox

RESULT = Result(
    version="1.4.2",
    digest="sha256:" + "ab" * 32,
    environment="staging",
    outcome="rolled_back",
    rollback="rolled back to revision 5 <app 1.4.1>",
    run_url="https://github.com/o/r/actions/runs/42",
)
CLI_ARGS = ["--version", "1.4.2", "--digest", RESULT.digest, "--environment", "staging", "--outcome", "failure"]


def test_slack_block_kit_message() -> None:
    payload = slack_payload(RESULT.message())
    assert payload["text"] == "airia-test-pod 1.4.2 → staging: rolled back"
    header, section, actions = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": payload["text"]}}
    assert {"type": "mrkdwn", "text": "*Rollback*\nrolled back to revision 5 &lt;app 1.4.1&gt;"} in section["fields"]
    assert actions["elements"][0]["url"] == RESULT.run_url


def test_teams_adaptive_card_in_a_workflows_envelope() -> None:
    payload = teams_payload(RESULT.message())
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["color"] == "Attention"  # a rollback ran: someone should look
    assert {"title": "Image digest", "value": RESULT.digest} in card["body"][1]["facts"]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open the run", "url": RESULT.run_url}]


def test_without_a_run_url_there_is_no_button_and_failure_is_flagged() -> None:
    assert (
        teams_payload(Result("1.4.2", "", "staging", "success").message())["attachments"][0]["content"]["body"][0][
            "color"
        ]
        == "Good"
    )
    failed = Result("1.4.2", "", "production", "failure")
    assert [block["type"] for block in slack_payload(failed.message())["blocks"]] == ["header", "section"]
    card = teams_payload(failed.message())["attachments"][0]["content"]
    assert "actions" not in card and card["body"][0]["color"] == "Attention"
    assert "Image digest: unknown" in email_message(failed.message(), "a@example.com", ["b@example.com"]).get_content()


def test_email_message() -> None:
    message = email_message(RESULT.message(), "ci@example.com", ["ops@example.com", "dev@example.com"])
    assert message["Subject"] == "airia-test-pod 1.4.2 → staging: rolled back"
    assert message["To"] == "ops@example.com, dev@example.com"
    assert "Open the run: https://github.com/o/r/actions/runs/42" in message.get_content()


def env_for(receiver_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    return {
        "SLACK_WEBHOOK_URL": f"{receiver_url}/slack/T000/B000/secret-slack-path",
        "TEAMS_WEBHOOK_URL": f"{receiver_url}/teams/workflows/secret-teams-sig",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_SECURITY": "none",
        "NOTIFY_EMAIL_FROM": "ci@example.com",
        "NOTIFY_EMAIL_TO": "ops@example.com, dev@example.com",
        **extra,
    }


def test_delivers_on_every_channel(receiver: Receiver, smtp: tuple[int, SmtpInbox]) -> None:
    port, inbox = smtp
    receiver.respond = lambda request: (200 if "slack" in request.path else 202, {}, b"ok")
    with httpx.Client() as client:
        outcomes = notify.notify(RESULT, env_for(receiver.url, port), client)
    assert outcomes == {"slack": "sent", "teams": "sent", "email": "sent"}
    slack, teams = receiver.requests
    assert (slack.path, slack.json()) == ("/slack/T000/B000/secret-slack-path", slack_payload(RESULT.message()))
    assert (teams.path, teams.json()) == ("/teams/workflows/secret-teams-sig", teams_payload(RESULT.message()))
    assert slack.headers["Content-Type"] == "application/json"
    (mail,) = inbox.messages
    assert mail["Subject"] == "airia-test-pod 1.4.2 → staging: rolled back"
    assert mail["To"] == "ops@example.com, dev@example.com"


def test_missing_settings_skip_the_channel_with_a_notice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SLACK_WEBHOOK_URL", "TEAMS_WEBHOOK_URL", "SMTP_HOST", "NOTIFY_EMAIL_FROM", "NOTIFY_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    assert notify.main(CLI_ARGS) == 0
    assert capsys.readouterr().out.splitlines() == [
        "::notice::slack notification skipped: SLACK_WEBHOOK_URL is not set",
        "::notice::teams notification skipped: TEAMS_WEBHOOK_URL is not set",
        "::notice::email notification skipped: SMTP_HOST, NOTIFY_EMAIL_FROM, NOTIFY_EMAIL_TO not set",
    ]


def test_failed_delivery_warns_exits_0_and_never_prints_the_webhook(
    receiver: Receiver, closed_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.respond = lambda request: (500, {}, b"boom")
    dead_smtp = closed_port  # nothing listens there
    for name, value in env_for(receiver.url, dead_smtp).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TEAMS_WEBHOOK_URL", f"http://127.0.0.1:{closed_port}/teams/secret-teams-sig")
    assert notify.main(CLI_ARGS) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "::warning::slack notification failed: HTTP 500",
        "::warning::teams notification failed: ConnectError",
        "::warning::email notification failed: ConnectionRefusedError",
    ]
    assert "secret" not in out


def test_smtp_settings_errors(receiver: Receiver, smtp: tuple[int, SmtpInbox]) -> None:
    port, inbox = smtp
    with httpx.Client() as client:
        bad_mode = notify.notify(RESULT, env_for(receiver.url, port, SMTP_SECURITY="tls1"), client)
        no_starttls = notify.notify(RESULT, env_for(receiver.url, port, SMTP_SECURITY="starttls"), client)
        ssl_on_plain = notify.notify(RESULT, env_for(receiver.url, port, SMTP_SECURITY="ssl"), client)
        no_auth = notify.notify(RESULT, env_for(receiver.url, port, SMTP_USERNAME="ci", SMTP_PASSWORD="pw"), client)
    assert bad_mode["email"] == "failed: SMTP_SECURITY must be starttls, ssl or none"
    assert no_starttls["email"] == "failed: SMTPNotSupportedError"  # the server offers no STARTTLS
    assert ssl_on_plain["email"].startswith("failed: SSL")
    assert no_auth["email"] == "failed: SMTPNotSupportedError"  # AUTH is not offered over plain text
    assert inbox.messages == []


def job(result: str, **outputs: str) -> dict[str, Any]:
    return {"result": result, "outputs": outputs}


@pytest.mark.parametrize(
    ("needs", "expected"),
    [
        (
            {
                "prepare": job("success"),
                "publish": job("success"),
                "deploy": job("success", rollback="false"),
                "rollback": job("skipped"),
            },
            ("success", ""),
        ),
        ({"publish": job("success"), "deploy": job("skipped"), "rollback": job("skipped")}, ("released", "")),
        (
            {"publish": job("success"), "deploy": job("failure", rollback="true"), "rollback": job("success")},
            ("rolled_back", "the health gate failed; the previous release is running again"),
        ),
        (
            {"publish": job("success"), "deploy": job("failure", rollback="true"), "rollback": job("failure")},
            ("rollback_failed", "rollback failure: act now (see ROLLBACK.md)"),
        ),
        (
            {"publish": job("success"), "deploy": job("failure", rollback="true")},
            ("rollback_failed", "rollback did not run: act now (see ROLLBACK.md)"),
        ),
        (
            {"publish": job("success"), "deploy": job("failure"), "rollback": job("skipped")},
            ("failure", "not attempted: the deploy job failed before the health gate"),
        ),
        (
            {"test": job("failure"), "scan": job("failure"), "deploy": job("skipped")},
            ("failure", "not needed: nothing was deployed (scan, test failed)"),
        ),
        ({"prepare": job("cancelled"), "deploy": job("skipped")}, ("cancelled", "")),
    ],
)
def test_release_outcome_from_the_jobs_results(needs: dict[str, Any], expected: tuple[str, str]) -> None:
    assert notify.release_outcome(needs) == expected


def test_cli_takes_the_outcome_from_needs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    base = ["--version", "1.4.2", "--environment", "staging"]
    needs = '{"publish": {"result": "success"}, "deploy": {"result": "success", "outputs": {"rollback": "false"}}}'
    assert notify.main([*base, "--needs", needs]) == 0
    assert notify.main([*base, "--needs", "[not json"]) == 0
    assert "::warning::cannot read the jobs' results (JSONDecodeError)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        notify.main(base)
    assert exit_info.value.code == 2
