"""The CLI: every exit code, every output format, --only, --strict, TESTPOD_CONFIG and the built-in demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import xmlschema

from app.cli import main
from tests.servers import StallServer

JUNIT_SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "data" / "junit.xsd")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config(tmp_path: Path, stall: StallServer, closed_port: int) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(
        "targets:\n"
        f"  - {{name: api-gw, kind: tcp, host: 127.0.0.1, port: {stall.port}}}\n"
        f"  - {{name: orders-db, kind: tcp, host: 127.0.0.1, port: {closed_port}}}\n"
        f"  - {{name: metrics, kind: tcp, host: 127.0.0.1, port: {closed_port}, required: false}}\n"
    )
    return path


def test_ready_exits_0(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(config), "--only", "api-gw"]) == 0
    out = capsys.readouterr().out
    assert "PASS    api-gw" in out and out.rstrip().splitlines()[-1].startswith("READY: 1 passed")


def test_failed_required_target_exits_1_with_cause_and_fix(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "FAIL    orders-db" in out and "(optional)" in out
    assert "orders-db: cannot connect to 127.0.0.1:" in out and "  fix: " in out
    assert "NOT READY: 1 passed, 0 warning, 2 failed of 3" in out


def test_optional_failure_alone_is_ready(config: Path) -> None:
    assert main(["check", "--config", str(config), "--only", "api-gw", "--only", "metrics"]) == 0


def test_json_format_is_the_run_model(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(config), "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["verdict"] == "not_ready"
    assert document["counts"] == {"total": 3, "passed": 1, "warning": 0, "failed": 2, "pending": 0}
    first = document["results"][0]
    assert set(first) >= {
        "name",
        "kind",
        "required",
        "status",
        "stage",
        "cause",
        "remediation",
        "duration_ms",
        "started_at",
        "steps",
        "facts",
    }
    assert [r["name"] for r in document["results"]] == ["api-gw", "orders-db", "metrics"]


def test_junit_format_validates(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.xml"
    assert main(["check", "--config", str(config), "--format", "junit", "--output", str(out)]) == 1
    JUNIT_SCHEMA.validate(str(out))
    text = out.read_text()
    assert text.count("<testcase") == 3 and text.count("<failure") == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "--format", "yaml"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_usage_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_only_name_exits_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(config), "--only", "nope"]) == 2
    assert "--only names no configured target: nope" in capsys.readouterr().err


def test_bad_config_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("targets:\n  - {name: a, kind: tcp, host: h, port: 0}\n")
    assert main(["check", "--config", str(path)]) == 2
    assert "targets[0].port: must be 1-65535" in capsys.readouterr().err


def test_empty_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("targets: []\n")
    assert main(["check", "--config", str(path)]) == 2
    assert "no targets configured" in capsys.readouterr().err


def test_unwritable_output_exits_2(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(config), "--output", str(tmp_path / "missing-dir" / "r.xml")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_config_path_from_environment(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTPOD_CONFIG", str(config))
    assert main(["check", "--only", "api-gw"]) == 0


def test_demo_config_runs_anywhere() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "check", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode in (0, 1), done.stderr
    assert "checking the built-in demo targets" in done.stderr
    assert json.loads(done.stdout)["results"]


def test_help_and_version_as_a_real_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "check", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "0 ready, 1 not ready, 2 bad usage or bad config" in done.stdout
    from app import __version__

    version = subprocess.run(
        [sys.executable, "-m", "app", "--version"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.strip() == f"airia-test-pod {__version__}"


def test_strict_turns_a_warning_into_not_ready(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.certs import Certificates
    from tests.checks.http_server import HttpServer, Reply

    certs = Certificates(tmp_path / "certs")
    with HttpServer(lambda _: Reply(200, b"ok"), certs.leaf("expiring", days=(-1, 5))) as server:
        path = tmp_path / "targets.yaml"
        path.write_text(
            "targets:\n"
            f"  - {{name: portal, kind: tls, host: localhost, port: {server.port}, ca_file: '{certs.ca_file}'}}\n"
        )
        assert main(["check", "--config", str(path)]) == 0
        assert "WARN    portal" in capsys.readouterr().out
        assert main(["check", "--config", str(path), "--strict"]) == 1
        assert "NOT READY: 0 passed, 1 warning, 0 failed" in capsys.readouterr().out


def test_validate_checks_nothing_and_exits_0_or_2(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--validate", "--config", str(config)]) == 0
    assert "3 target(s), all valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets:\n  - {name: db, kind: tcp, host: 127.0.0.1, port: 70000}\n")
    assert main(["check", "--validate", "--config", str(bad)]) == 2
    assert "targets[0].port" in capsys.readouterr().err
