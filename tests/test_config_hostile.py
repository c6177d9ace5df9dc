"""Hostile targets files: whatever the bytes, the loader answers with a ConfigError naming the place, quickly,
and the CLI exits 2 without a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main
from app.config import MAX_CONFIG_BYTES, MAX_TARGETS, ConfigError, load_targets, parse_targets

# a few hundred bytes that safe_load builds as a DAG, and that expand to 9^9 strings as a tree
BILLION_LAUGHS = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
# a generous bound for a loaded CI machine; tests/benchmarks/bench_hostile.py measures the real figure (≤ 1 s)
BOUND_SECONDS = 5.0


def refusal(text: str, **environ: str) -> str:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse_targets(text, "targets.yaml", environ)
    assert time.monotonic() - started < BOUND_SECONDS
    return str(caught.value)


@pytest.mark.timeout(30)
def test_billion_laughs_is_refused_before_it_expands() -> None:
    assert len(BILLION_LAUGHS) < 500
    assert "expands to more than" in refusal(BILLION_LAUGHS)
    # the same expansion hidden under a target's field, where ${ENV} resolution walks every path
    hidden = "targets:\n  - name: a\n    kind: tcp\n    host: h\n    port: 1\n    description: *i\n"
    assert "expands to more than" in refusal(BILLION_LAUGHS + hidden)


def test_deep_flow_nesting_is_refused_with_its_line() -> None:
    message = refusal("targets:\n  - " + "[" * 5000 + "]" * 5000 + "\n")
    assert message.startswith("targets.yaml: nested more than 32 levels deep at line 2")


def test_deep_nesting_through_aliases_is_refused() -> None:
    lines = ["a0: &a0 [[[[[[[[[[1]]]]]]]]]]"] + [f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" for i in range(1, 8)]
    assert "nested more than" in refusal("\n".join(lines) + "\n")


def test_a_recursive_alias_is_refused() -> None:
    assert "nested more than" in refusal("a: &a [*a]\n")


def test_an_integer_of_many_digits_is_refused_with_its_line() -> None:
    message = refusal("targets:\n  - {name: a, kind: tcp, host: h, port: " + "9" * 50_000 + "}\n")
    assert message == "targets.yaml: an integer longer than 32 digits at line 2, column 41"


def test_an_overlong_value_is_refused() -> None:
    assert "a value longer than" in refusal("targets:\n  - {name: a, kind: tcp, host: '" + "h" * 70_000 + "'}\n")


def test_a_duplicate_key_names_the_key_and_its_line() -> None:
    text = "targets:\n  - name: a\n    kind: tcp\n    host: h\n    port: 1\n    port: 2\n"
    assert refusal(text) == "targets.yaml: key 'port' is given twice at line 6, column 5"
    assert "key 'targets' is given twice at line 2" in refusal("targets: []\ntargets: []\n")


def test_merge_keys_may_still_be_overridden() -> None:
    text = (
        "base: &base {kind: tcp, host: h, port: 1}\n"
        "targets:\n  - {<<: *base, name: a}\n  - {<<: *base, name: b, port: 2}\n"
    )
    with pytest.raises(ConfigError, match=r"^base: unknown key"):  # the anchor's home is not a targets-file key
        parse_targets(text, "targets.yaml", {})


def test_too_many_targets_are_refused() -> None:
    item = "  - {name: t, kind: tcp, host: h, port: 1}\n"
    assert refusal("targets:\n" + item * (MAX_TARGETS + 1)).startswith(f"targets: {MAX_TARGETS + 1} targets")


def test_an_unreadable_timestamp_is_a_config_error() -> None:
    assert "cannot be read" in refusal("targets: 2024-02-30\n")


@pytest.mark.parametrize(
    "value", ["caf\u00e9-token", "tab\tok-but-\x01-not", "line\u2028break"], ids=["latin", "control", "unicode-break"]
)
def test_a_header_value_that_cannot_be_sent_is_a_config_error(value: str) -> None:
    text = "targets:\n  - {name: a, kind: http, url: 'http://127.0.0.1/', headers: {X-Key: '${V}'}}\n"
    message = refusal(text, V=value)
    assert message.startswith("targets[0].headers.X-Key: may hold only printable ASCII")
    assert value not in message


# one target of each kind with a URL field or a secret it sends as a header, `${U}` its URL and `${K}` that secret
SENDING_KINDS = {
    "openai": "{kind: openai, base_url: '${U}', model: m, api_key: '${K}'}",
    "anthropic": "{kind: anthropic, base_url: '${U}', model: m, api_key: '${K}'}",
    "gemini": "{kind: gemini, base_url: '${U}', model: m, api_key: '${K}'}",
    "mistral": "{kind: mistral, base_url: '${U}', model: m, api_key: '${K}'}",
    "document_intelligence": "{kind: document_intelligence, endpoint: '${U}', api_key: '${K}'}",
    "bedrock": "{kind: bedrock, region: us-east-1, model: m, endpoint_url: '${U}', access_key_id: a, "
    "secret_access_key: s, session_token: '${K}'}",
    "s3": "{kind: s3, bucket: data, endpoint_url: '${U}', access_key_id: a, secret_access_key: s, "
    "session_token: '${K}'}",
    "azure_blob": "{kind: azure_blob, account_name: acc, account_key: a2V5, endpoint: '${U}', container: probe}",
}


@pytest.mark.parametrize("kind", sorted(SENDING_KINDS))
def test_a_url_with_credentials_is_a_config_error_in_every_kind(kind: str) -> None:
    text = f"targets:\n  - {{name: a, {SENDING_KINDS[kind][1:]}\n"
    message = refusal(text, U="https://user:pw-9f3c@127.0.0.1:9000", K="key")
    assert "must not contain credentials" in message and "pw-9f3c" not in message


@pytest.mark.parametrize("kind", sorted(set(SENDING_KINDS) - {"azure_blob"}))
def test_a_key_sent_as_a_header_that_cannot_be_sent_is_a_config_error(kind: str) -> None:
    text = f"targets:\n  - {{name: a, {SENDING_KINDS[kind][1:]}\n"
    message = refusal(text, U="http://127.0.0.1:9000", K="s\u00e9cret-key")
    assert "may hold only printable ASCII" in message and "cret-key" not in message


# --- generated hostile documents -------------------------------------------------------------------------------


def nested(depth: int, opener: str) -> str:
    closer = {"[": "]", "{": "}"}[opener]
    inner = "1" if opener == "[" else "a: 1"
    body = inner
    for _ in range(depth):
        body = f"{opener}{body}{closer}" if opener == "[" else f"{{k: {body}}}"
    return body


def laughs(width: int, levels: int) -> str:
    lines = [f"l0: &l0 [{','.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\ntargets: *l" + str(levels - 1) + "\n"


hostile = st.one_of(
    st.builds(nested, st.integers(33, 3000), st.sampled_from("[{")),
    st.builds(laughs, st.integers(4, 12), st.integers(6, 12)),
    st.builds(lambda n: "targets:\n  - {port: " + "7" * n + "}\n", st.integers(33, 20_000)),
    st.builds(
        lambda key, n: "targets:\n  - {" + ", ".join([f"{key}: 1"] * n) + "}\n",
        st.sampled_from(["port", "a"]),
        st.integers(2, 50),
    ),
    st.text(alphabet=st.sampled_from(list("[]{}&*!|>:-,'\"#%@` \n\tab1\x00\x7f\u00e9")), max_size=2000),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile)
def test_any_generated_hostile_document_is_refused_or_loaded_quickly(text: str) -> None:
    started = time.monotonic()
    outcome: list[object] | ConfigError
    try:
        outcome = list(parse_targets(text, "targets.yaml", {}))
    except ConfigError as error:  # nothing but a ConfigError escapes, and it has a message
        outcome = error
    assert isinstance(outcome, list) or str(outcome)
    assert time.monotonic() - started < BOUND_SECONDS


@pytest.mark.parametrize(
    "text",
    [
        BILLION_LAUGHS,
        "targets: " + "[" * 20_000 + "]" * 20_000 + "\n",
        "targets:\n  - {name: a, kind: tcp, host: h, port: " + "1" * 30_000 + "}\n",
        "targets: []\ntargets: []\n",
        "#" * (MAX_CONFIG_BYTES + 1),
    ],
    ids=["billion-laughs", "deep", "long-integer", "duplicate-key", "too-big"],
)
def test_the_cli_exits_2_with_a_message_never_a_traceback(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(text)
    started = time.monotonic()
    assert main(["check", "--config", str(path)]) == 2
    assert time.monotonic() - started < BOUND_SECONDS
    err = capsys.readouterr().err
    assert err.startswith(f"config error in {path}:\n") and "Traceback" not in err


def test_load_targets_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(ConfigError, match=f"^{path}: expands to more than"):
        load_targets(path)


@pytest.mark.timeout(60)
def test_serve_stays_live_not_ready_and_shows_the_error(tmp_path: Path) -> None:
    import warnings

    from app.config import Settings
    from app.main import create_app
    from tests.web.helpers import PASSWORD, SECRET_KEY

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from fastapi.testclient import TestClient

    path = tmp_path / "targets.yaml"
    path.write_text(BILLION_LAUGHS)
    settings = Settings(config=path, auth_password=PASSWORD, secret_key=SECRET_KEY, run_on_start=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 503
        token = client.post("/api/token", data={"username": "admin", "password": PASSWORD}).json()["access_token"]
        health = client.get("/health", headers={"Authorization": f"Bearer {token}"}).json()
        assert health["config_error"].startswith(f"{path}: expands to more than")
