"""What the AI kinds share: the generated image, the classification of refusals, and their config."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from app.checks.ai import (
    BY_STATUS,
    GOOGLE_QUOTAS,
    NO_QUOTA,
    QUOTA_PER_MINUTE,
    QUOTA_USED_UP,
    TEST_IMAGE,
    Quota,
    Refusal,
    Rule,
    google_details,
    google_quota,
    google_retry_delay,
    judge,
)
from app.checks.base import CheckFailed, Probe, Stage
from tests.checks.helpers import ENVIRON, config_error, parse


def test_the_test_image_is_a_valid_png_of_one_colour() -> None:
    assert TEST_IMAGE.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, position = {}, 8
    while position < len(TEST_IMAGE):
        (length,) = struct.unpack(">I", TEST_IMAGE[position : position + 4])
        kind, data = TEST_IMAGE[position + 4 : position + 8], TEST_IMAGE[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", TEST_IMAGE[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        chunks[kind] = data
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour) == (32, 32, 8, 2)
    rows = zlib.decompress(chunks[b"IDAT"])
    assert len(rows) == height * (1 + 3 * width)
    assert rows == (b"\x00" + bytes((220, 20, 20)) * width) * height  # every row unfiltered, every pixel red
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]


def probe() -> Probe:
    return Probe(deadline=1e12)


def test_a_provider_code_wins_over_the_http_status() -> None:
    rules = {"overloaded_error": Rule(None, "wait"), 500: Rule(Stage.OPERATION, "broken")}
    notebook = probe()
    judge(notebook, "chat", Refusal(500, "overloaded_error", "Overloaded", "4"), rules)
    assert notebook.warnings == [
        (Stage.OPERATION, "chat: HTTP 500 overloaded_error: Overloaded, retry after 4 s", "wait")
    ]
    with pytest.raises(CheckFailed) as failure:
        judge(probe(), "chat", Refusal(500, "other", "boom"), rules)
    assert (failure.value.stage, failure.value.remediation) == (Stage.OPERATION, "broken")


@pytest.mark.parametrize(("status", "stage"), [(401, Stage.AUTH), (403, Stage.PERMISSION), (404, Stage.OPERATION)])
def test_without_a_known_code_the_status_decides(status: int, stage: Stage) -> None:
    with pytest.raises(CheckFailed) as failure:
        judge(probe(), "embedding", Refusal(status, str(status), "no"), {}, model="m")
    assert failure.value.stage == stage
    assert failure.value.cause == f"embedding: HTTP {status}: no"  # a code equal to the status is not repeated
    assert failure.value.remediation == BY_STATUS[status].remediation.format(model="m", call="embedding")


def test_an_unlisted_server_error_fails_and_an_unlisted_client_error_names_the_call() -> None:
    with pytest.raises(CheckFailed, match="HTTP 502") as server:
        judge(probe(), "chat", Refusal(502, "", ""), {})
    assert "status page" in server.value.remediation
    with pytest.raises(CheckFailed) as client:
        judge(probe(), "vision", Refusal(422, "", "bad"), {}, model="m")
    assert client.value.remediation == "the service rejects the request: check that 'm' is a vision model"


_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


def quota_of(*violations: dict[str, Any]) -> Quota | None:
    return google_quota([{"@type": _QUOTA_FAILURE, "violations": list(violations)}])


@pytest.mark.parametrize(
    ("quota_id", "window", "term"),
    [
        ("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "minute", QUOTA_PER_MINUTE),
        ("GenerateContentInputTokensPerModelPerMinute", "minute", QUOTA_PER_MINUTE),
        ("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "day", QUOTA_USED_UP),
        ("defaultPerSecondPerProject", "second", QUOTA_PER_MINUTE),
        ("generate_content_requests_per_hour_per_project", "hour", QUOTA_USED_UP),
        ("MonthlySpendPerProject", None, None),  # names no window: nothing says more than a rate limit
        ("SuperminuteRequests", None, None),
    ],
)
def test_the_window_comes_from_the_words_of_the_quota_id(quota_id: str, window: str | None, term: str | None) -> None:
    quota = quota_of({"quotaId": quota_id, "quotaMetric": "m", "quotaValue": "10"})
    assert quota is not None
    assert (quota.window, quota.term, quota.limit) == (window, term, 10)


def test_a_quota_of_0_outranks_a_day_which_outranks_a_minute_which_outranks_no_window() -> None:
    minute = {"quotaId": "RequestsPerMinute", "quotaValue": "5"}
    day = {"quotaId": "RequestsPerDay", "quotaValue": "20"}
    zero = {"quotaId": "TokensPerMinute", "quotaValue": "0"}
    assert str(quota_of(minute, day)) == "quota RequestsPerDay, limit 20"
    assert str(quota_of({"quotaId": "Requests"}, minute)) == "quota RequestsPerMinute, limit 5"
    assert str(quota_of(minute, zero, day)) == "quota TokensPerMinute, limit 0"
    assert quota_of(minute, zero, day).term == NO_QUOTA  # type: ignore[union-attr]
    assert str(quota_of({"quotaMetric": "a/b"})) == "quota a/b"


def test_the_retry_delay_is_a_duration_in_whole_seconds() -> None:
    def delay(value: Any) -> str | None:
        return google_retry_delay([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": value}])

    assert [delay("23s"), delay("20.044661790s"), delay("0s")] == ["23", "21", "0"]
    assert [delay("23"), delay("-1s"), delay("1e3s"), delay(23), delay("9" * 11 + "s")] == [None] * 5


def test_a_quota_rule_names_the_quota_in_cause_and_remediation() -> None:
    quota = quota_of({"quotaId": "RequestsPerDay", "quotaMetric": "svc/requests", "quotaValue": "20"})
    with pytest.raises(CheckFailed) as failure:
        judge(probe(), "chat", Refusal(429, "RESOURCE_EXHAUSTED", "over", quota=quota), GOOGLE_QUOTAS, model="m")
    assert (
        failure.value.cause == "chat: HTTP 429 RESOURCE_EXHAUSTED: over; quota RequestsPerDay (svc/requests), limit 20"
    )
    assert failure.value.remediation.startswith("quota RequestsPerDay (svc/requests) is used up for this day")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
_rpc = st.fixed_dictionaries(
    {"@type": st.sampled_from([_QUOTA_FAILURE, "type.googleapis.com/google.rpc.ErrorInfo"])},
    optional={
        "violations": st.lists(
            st.dictionaries(st.sampled_from(["quotaId", "quotaMetric", "quotaValue"]), _json, max_size=3), max_size=4
        )
        | _json,
        "reason": st.just("RATE_LIMIT_EXCEEDED") | _json,
        "metadata": st.dictionaries(st.sampled_from(["quota_limit", "quota_metric", "quota_limit_value"]), _json)
        | _json,
    },
)


@settings(deadline=None)
@given(st.lists(_rpc | _json, max_size=6) | _json)
def test_any_details_give_a_quota_or_none_and_never_raise(details: Any) -> None:
    quota = google_quota(google_details({"details": details}))
    if quota is not None:
        assert quota.term in (None, NO_QUOTA, QUOTA_USED_UP, QUOTA_PER_MINUTE)
        assert len(str(quota)) < 300
        assert not any(character in str(quota) for character in "\n\r\x00")


@pytest.mark.parametrize(
    "entry",
    [
        {"kind": "anthropic", "model": "claude", "api_key": "${AI_KEY}"},
        {"kind": "gemini", "model": "gemini-2.5-flash", "api_key": "${AI_KEY}"},
        {"kind": "mistral", "model": "mistral-small-latest", "api_key": "${AI_KEY}"},
        {"kind": "document_intelligence", "endpoint": "https://d.cognitiveservices.azure.com", "api_key": "${AI_KEY}"},
        {
            "kind": "bedrock",
            "region": "us-east-1",
            "model": "m",
            "access_key_id": "AKIA1",
            "secret_access_key": "${AI_KEY}",
        },
    ],
)
def test_each_kind_takes_its_secret_from_the_environment(entry: dict[str, Any]) -> None:
    (target,) = parse(yaml.safe_dump({"targets": [{"name": "ai", **entry}]}))
    assert target.secrets() == [ENVIRON["AI_KEY"]]
    assert ENVIRON["AI_KEY"] not in repr(target)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "anthropic", "api_key": "k"}, "targets[0].model: required"),
        ({"kind": "gemini", "model": "g", "api_key": "k", "api_version": "v2"}, "targets[0].api_version:"),
        ({"kind": "gemini", "model": "models/g", "api_key": "k"}, "targets[0].model:"),
        (
            {"kind": "mistral", "model": "m", "api_key": "k", "embedding_dimensions": 0},
            "targets[0].embedding_dimensions:",
        ),
        (
            {"kind": "bedrock", "region": "us-east-1", "model": "m", "access_key_id": "AKIA1"},
            "access_key_id and secret",
        ),
        ({"kind": "bedrock", "region": "mars", "model": "m"}, "targets[0].region:"),
        (
            {"kind": "bedrock", "region": "us-east-1", "model": "m", "endpoint_url": "ftp://x"},
            "targets[0].endpoint_url:",
        ),
        (
            {"kind": "document_intelligence", "endpoint": "https://d", "api_key": "k", "model": "a/b"},
            "targets[0].model:",
        ),
    ],
)
def test_config_errors_name_the_field(entry: dict[str, Any], message: str) -> None:
    assert message in config_error(yaml.safe_dump({"targets": [{"name": "ai", **entry}]}))
