"""The targets file: one test per validation rule, plus `${ENV}` resolution and a round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.checks.tcp import TcpTarget
from app.config import MAX_CONFIG_BYTES, ConfigError, load_targets, parse_targets


def parse(text: str, **environ: str) -> list:
    return parse_targets(text, "targets.yaml", environ)


def error_of(text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text, **environ)
    return str(caught.value)


def test_valid_file_gives_typed_targets_with_defaults() -> None:
    [target] = parse("targets:\n  - {name: api-gw, kind: tcp, host: localhost, port: 443}\n")
    assert isinstance(target, TcpTarget)
    assert (target.required, target.timeout, target.effective_timeout) == (True, None, 5.0)


def test_empty_file_has_no_targets() -> None:
    assert parse("") == []


def test_port_out_of_range_names_target_index_and_field() -> None:
    text = "targets:\n  - {name: a, kind: tcp, host: h, port: 1}\n  - {name: b, kind: tcp, host: h, port: 70000}\n"
    assert error_of(text) == "targets[1].port: must be 1-65535 (line 3)"


def test_unknown_key_is_a_typo() -> None:
    assert error_of("targets:\n  - {name: a, kind: tcp, host: h, port: 1, prot: 2}\n") == (
        "targets[0].prot: unknown key (check its spelling) (line 2)"
    )


def test_unknown_top_level_key() -> None:
    assert error_of("targest: []\n") == "targest: unknown key (check its spelling) (line 1)"


def test_missing_field() -> None:
    assert error_of("targets:\n  - {name: a, kind: tcp, host: h}\n") == "targets[0].port: required (line 2)"


def test_unknown_kind_lists_the_known_ones() -> None:
    message = error_of("targets:\n  - {name: a, kind: redis, host: h}\n")
    assert message.startswith("targets[0]: unknown kind 'redis'; expected one of")
    assert "'tcp'" in message


def test_missing_kind() -> None:
    assert error_of("targets:\n  - {name: a, host: h}\n") == "targets[0]: missing 'kind' (line 2)"


def test_duplicate_names_are_rejected() -> None:
    text = "targets:\n  - {name: a, kind: tcp, host: h, port: 1}\n  - {name: a, kind: tcp, host: h, port: 2}\n"
    assert "target name 'a' is used twice" in error_of(text)


@pytest.mark.parametrize("name", ["Orders", "orders_db", "-orders", "orders-", "", "x" * 64])
def test_names_are_dns_label_like(name: str) -> None:
    assert error_of(f"targets:\n  - {{name: '{name}', kind: tcp, host: h, port: 1}}\n").startswith("targets[0].name:")


@pytest.mark.parametrize("timeout", [0, -1, 601])
def test_timeout_must_be_positive_and_bounded(timeout: int) -> None:
    text = f"targets:\n  - {{name: a, kind: tcp, host: h, port: 1, timeout: {timeout}}}\n"
    assert error_of(text).startswith("targets[0].timeout:")


def test_wrong_type() -> None:
    assert error_of("targets:\n  - {name: a, kind: tcp, host: h, port: 1, required: maybe}\n").startswith(
        "targets[0].required:"
    )


def test_env_reference_is_resolved() -> None:
    [target] = parse("targets:\n  - {name: a, kind: tcp, host: '${DB_HOST}', port: 5432}\n", DB_HOST="db.internal")
    assert target.host == "db.internal"


def test_unset_env_reference_is_an_error_not_an_empty_value() -> None:
    assert error_of("targets:\n  - {name: a, kind: tcp, host: '${DB_HOST}', port: 1}\n") == (
        "targets[0].host: environment variable DB_HOST is not set"
    )


def test_invalid_yaml_names_the_line() -> None:
    assert error_of("targets:\n  - {name: a\n").startswith("targets.yaml: not valid YAML at line")


def test_top_level_must_be_a_mapping() -> None:
    assert "expected a mapping" in error_of("- a\n- b\n")


def test_targets_must_be_a_list() -> None:
    assert error_of("targets: 3\n").startswith("targets:")


def test_errors_never_echo_input_values() -> None:
    message = error_of("targets:\n  - {name: a, kind: tcp, host: h, port: 'hunter2-secret'}\n")
    assert "hunter2-secret" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_targets(tmp_path / "absent.yaml")


def test_huge_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_targets(big)


def test_binary_file_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read it"):
        load_targets(binary)


def test_load_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("targets:\n  - {name: a, kind: tcp, host: '${TESTPOD_T_HOST}', port: 1}\n")
    monkeypatch.setenv("TESTPOD_T_HOST", "127.0.0.1")
    assert load_targets(path)[0].host == "127.0.0.1"


names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(names, st.integers(1, 65535), st.booleans(), st.none() | st.floats(0.01, 600))
def test_tcp_target_round_trips_through_yaml(name: str, port: int, required: bool, timeout: float | None) -> None:
    import yaml

    original = TcpTarget(name=name, kind="tcp", host="localhost", port=port, required=required, timeout=timeout)
    text = yaml.safe_dump({"targets": [original.model_dump(exclude_none=True)]})
    assert parse(text) == [original]
