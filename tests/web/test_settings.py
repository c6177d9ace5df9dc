"""Server settings: where they come from, which secrets are refused, and the generated password."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

from app.auth import Authenticator
from app.cli import main as cli_main
from app.config import Settings, describe_settings_error
from app.main import create_app
from tests.web.helpers import PASSWORD, SECRET_KEY, USERNAME


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "PORT",
        "TESTPOD_AUTH_PASSWORD",
        "TESTPOD_AUTH_PASSWORD_HASH",
        "TESTPOD_SECRET_KEY",
        "TESTPOD_DEV_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TESTPOD_SECRETS_DIR", str(tmp_path / "no-secrets-here"))


def refusal(**values: object) -> str:
    with pytest.raises(ValidationError) as raised:
        Settings(**values)  # type: ignore[arg-type]
    return describe_settings_error(raised.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth_password": "short-pw"}, "TESTPOD_AUTH_PASSWORD is shorter than 12 characters"),
        ({"auth_password": "Password1234"}, "TESTPOD_AUTH_PASSWORD is a well-known or trivial password"),
        ({"auth_password": "aaaaaaaaaaaaaaaa"}, "TESTPOD_AUTH_PASSWORD is a well-known or trivial password"),
        ({"auth_username": "operator-admin", "auth_password": "operator-admin"}, "well-known or trivial"),
        ({"secret_key": "too-short-key"}, "TESTPOD_SECRET_KEY is shorter than 32 characters"),
        ({"secret_key": "changeme-changeme-changeme-changeme-123"}, "TESTPOD_SECRET_KEY looks like a placeholder"),
        ({"secret_key": "ab" * 20}, "TESTPOD_SECRET_KEY looks like a placeholder"),
        ({"secret_key": "0123456789abcdef0123456789abcdef"}, "TESTPOD_SECRET_KEY looks like a placeholder"),
        ({"secret_key": "abcdefghijklmnopqrstuvwxyz0123456789"}, "TESTPOD_SECRET_KEY looks like a placeholder"),
        ({"secret_key": "Pass1234" * 5}, "TESTPOD_SECRET_KEY looks like a placeholder"),
        ({"auth_password": PASSWORD, "auth_password_hash": "$argon2id$x"}, "not both"),
        ({"auth_password_hash": "plain-text-not-a-hash"}, "TESTPOD_AUTH_PASSWORD_HASH is not an argon2 hash"),
        ({"session_minutes": 0}, "TESTPOD_SESSION_MINUTES: Input should be greater than or equal to 1"),
    ],
)
def test_weak_or_contradictory_secrets_are_refused(values: dict[str, object], message: str) -> None:
    text = refusal(**values)
    assert message in text
    for value in values.values():  # the refusal names the variable, never the value
        if isinstance(value, str) and len(value) > 6:
            assert value not in text


def test_dev_mode_accepts_weak_secrets() -> None:
    settings = Settings(auth_password="dev", secret_key="dev", dev_mode=True)
    assert settings.auth_password is not None and settings.auth_password.get_secret_value() == "dev"


def test_settings_from_environment_and_secret_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "auth_password").write_text("from-a-mounted-secret-file\n")
    (secrets / "secret_key").write_text(SECRET_KEY)
    monkeypatch.setenv("TESTPOD_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("TESTPOD_CONFIG", "/etc/airia-test-pod/targets.yaml")
    monkeypatch.setenv("TESTPOD_RUN_ON_START", "false")
    monkeypatch.setenv("TESTPOD_STRICT", "true")
    settings = Settings()
    assert settings.port == 9123
    assert settings.config == Path("/etc/airia-test-pod/targets.yaml")
    assert (settings.run_on_start, settings.strict, settings.auth_username) == (False, True, "admin")
    assert settings.auth_password is not None
    assert settings.auth_password.get_secret_value() == "from-a-mounted-secret-file"
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == SECRET_KEY
    # the environment wins over a file
    monkeypatch.setenv("TESTPOD_AUTH_PASSWORD", "from-the-environment-1")
    assert Settings().auth_password.get_secret_value() == "from-the-environment-1"  # type: ignore[union-attr]


def test_a_bad_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert describe_settings_error(raised.value).startswith("PORT: Input should be a valid integer")


def test_serve_refuses_to_start_with_a_weak_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TESTPOD_AUTH_PASSWORD", "letmein")
    assert cli_main(["serve", "--host", "127.0.0.1"]) == 2
    error = capsys.readouterr().err
    assert "refusing to start" in error and "TESTPOD_AUTH_PASSWORD is shorter than 12 characters" in error
    assert "letmein" not in error


def test_a_missing_password_is_generated_and_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(Settings(secret_key=SECRET_KEY))
    printed = capsys.readouterr().err
    assert printed.count("password: ") == 1
    password = printed.split("password: ")[1].split()[0]
    assert len(password) >= 20
    client = TestClient(app)
    assert client.post("/api/token", data={"username": USERNAME, "password": password}).status_code == 200
    assert capsys.readouterr().err == ""  # never again


def test_a_missing_secret_key_is_generated_per_process() -> None:
    first, _ = Authenticator.from_settings(Settings(auth_password=PASSWORD))
    second, _ = Authenticator.from_settings(Settings(auth_password=PASSWORD))
    assert len(first.secret_key) >= 32
    assert first.secret_key != second.secret_key
    assert second.read(first.issue().token) is None  # tokens from an earlier process stop working


def test_hash_password_command_makes_a_usable_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli_main(["hash-password"]) == 0
    password_hash = capsys.readouterr().out.strip()
    assert password_hash.startswith("$argon2id$")
    app = create_app(Settings(auth_password_hash=password_hash, secret_key=SECRET_KEY))
    client = TestClient(app)
    assert client.post("/api/token", data={"username": USERNAME, "password": PASSWORD}).status_code == 200

    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert cli_main(["hash-password"]) == 2


def test_serve_help_lists_every_setting() -> None:
    from app.cli import SERVE_ENVIRONMENT

    options = {"host", "port", "forwarded_allow_ips"}  # command-line options, listed by argparse itself
    for field in set(Settings.model_fields) - options:
        assert f"TESTPOD_{field.upper()} " in SERVE_ENVIRONMENT, field
