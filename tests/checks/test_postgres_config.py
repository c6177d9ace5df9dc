"""The postgres kind's config: defaults, `${ENV}` references and precise messages for malformed targets."""

from __future__ import annotations

import pytest

from app.checks.postgres import PostgresTarget
from tests.checks.helpers import config_error, parse


def test_config_with_defaults_and_env_password() -> None:
    [pg] = parse(
        "targets:\n"
        "  - {name: db, kind: postgres, host: db.example.com, database: airia, user: app, password: '${PG_PASSWORD}'}\n"
    )
    assert isinstance(pg, PostgresTarget)
    assert (pg.port, pg.sslmode, pg.schema_, pg.write_test, pg.extensions) == (5432, "require", "public", True, [])
    assert pg.secrets() == ["s3cret"]
    assert "s3cret" not in repr(pg)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("host: h, user: u", "targets[0].database: required"),
        ("host: h, database: d, user: u, sslmode: verify", "targets[0].sslmode: Input should be 'disable', 'allow'"),
        ("host: h, database: d, user: u, min_version: fifteen", "targets[0].min_version: String should match"),
        (
            "host: h, database: d, user: u, extensions: ['vector; DROP']",
            "targets[0].extensions[0]: String should match",
        ),
        ("host: h, database: d, user: u, port: 0", "targets[0].port: must be 1-65535"),
        ("host: h, database: d, user: u, sslmod: require", "targets[0].sslmod: unknown key"),
        (
            "host: h, database: d, user: u, sslmode: prefer, sslrootcert: /ca.pem",
            "targets[0]: sslrootcert is only used with sslmode require, verify-ca or verify-full",
        ),
    ],
)
def test_malformed_config_names_target_and_field(fields: str, message: str) -> None:
    assert config_error(f"targets:\n  - {{name: db, kind: postgres, {fields}}}\n").startswith(message)
