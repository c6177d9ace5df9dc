"""registry against a real OCI registry (distribution, Basic and bearer token auth) on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.checks.base import Stage, Status
from app.checks.http import Answer
from app.checks.registry import RegistryTarget, _challenge
from app.results import Result
from tests.checks import run_check
from tests.checks.helpers import config_error
from tests.checks.http_server import HttpServer, Reply
from tests.services.proxy import ForwardProxy
from tests.services.registry import PASSWORD, USER, OciRegistry


def registry(url: str, **fields: Any) -> RegistryTarget:
    return RegistryTarget.model_validate({"name": "images", "kind": "registry", "url": url, **fields})


def with_password(url: str, **fields: Any) -> RegistryTarget:
    return registry(url, username=USER, password=PASSWORD, **fields)


def shown(result: Result) -> str:
    return json.dumps(result.model_dump(mode="json"))


def docker_config(tmp_path: Path, host: str, password: str = PASSWORD) -> Path:
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    path = tmp_path / ".dockerconfigjson"
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


def test_basic_auth_resolves_a_tag_to_its_digest(oci_registry: OciRegistry) -> None:
    result = run_check(with_password(oci_registry.basic_url, images=["airia/api:1.0"]))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["registry_auth"] == "basic"
    assert result.facts["digest airia/api:1.0"] == oci_registry.digests["airia/api:1.0"]
    assert [s.name for s in result.steps if s.name != "http request"] == [
        "connect",
        "api",
        "login",
        "manifest airia/api:1.0",
    ]
    assert PASSWORD not in shown(result)


def test_credentials_come_from_the_pull_secrets_dockerconfigjson(oci_registry: OciRegistry, tmp_path: Path) -> None:
    host = oci_registry.basic_url.removeprefix("http://")
    config = docker_config(tmp_path, host)
    result = run_check(registry(oci_registry.basic_url, docker_config=config, images=["airia/api:1.0"]))
    assert result.status == Status.PASSED, result.cause
    elsewhere = docker_config(tmp_path, "registry.example:5000")
    missing = run_check(registry(oci_registry.basic_url, docker_config=elsewhere))
    assert (missing.stage, missing.cause) == (
        Stage.AUTH,
        f"docker_config has no credentials for {host} (it has registry.example:5000)",
    )
    absent = run_check(registry(oci_registry.basic_url, docker_config=tmp_path / "absent.json"))
    assert (absent.stage, absent.cause) == (Stage.AUTH, f"docker_config {tmp_path / 'absent.json'} does not exist")
    (tmp_path / "broken.json").write_text("{not json")
    broken = run_check(registry(oci_registry.basic_url, docker_config=tmp_path / "broken.json"))
    assert broken.cause.endswith("is not a .dockerconfigjson (JSONDecodeError)")


def test_wrong_or_missing_credentials_fail_at_auth(oci_registry: OciRegistry, tmp_path: Path) -> None:
    wrong = run_check(registry(oci_registry.basic_url, username=USER, password="wrong-password"))
    assert (wrong.status, wrong.stage) == (Status.FAILED, Stage.AUTH)
    assert wrong.cause.startswith(f"the registry refuses the credentials of {USER}: HTTP 401")
    assert "wrong-password" not in shown(wrong)
    anonymous = run_check(registry(oci_registry.token_url))
    assert (anonymous.status, anonymous.stage) == (Status.FAILED, Stage.AUTH)
    assert "refuses the credentials (anonymous: no credentials configured): HTTP 401" in anonymous.cause
    assert anonymous.cause.startswith("the token service 127.0.0.1:")


def test_the_bearer_flow_and_a_multi_arch_index(oci_registry: OciRegistry) -> None:
    target = with_password(oci_registry.token_url, images=["airia/api:multi"], platforms=["linux/amd64", "linux/arm64"])
    result = run_check(target)
    assert result.status == Status.PASSED, result.cause
    assert result.facts["registry_auth"] == "bearer"
    assert result.facts["platforms airia/api:multi"] == "linux/amd64, linux/arm64/v8"
    assert result.facts["digest airia/api:multi"] == oci_registry.digests["airia/api:multi"]
    assert "token repository:airia/api:pull" in [s.name for s in result.steps]


def test_a_missing_platform_repository_and_tag_are_named(oci_registry: OciRegistry) -> None:
    platform = run_check(with_password(oci_registry.token_url, images=["airia/api:multi"], platforms=["linux/s390x"]))
    assert (platform.stage, platform.cause) == (
        Stage.OPERATION,
        "airia/api:multi has no image for linux/s390x (its index offers linux/amd64, linux/arm64/v8)",
    )
    repository = run_check(with_password(oci_registry.basic_url, images=["airia/nothing:1.0"]))
    assert repository.cause == "the repository airia/nothing does not exist in the registry"
    tag = run_check(with_password(oci_registry.basic_url, images=["airia/api:9.9"]))
    assert (
        tag.cause
        == "airia/api:9.9: the tag or digest 9.9 does not exist in airia/api (it has 1.0, amd64, arm64, multi)"
    )


def test_a_denied_pull_is_a_permission_failure(oci_registry: OciRegistry) -> None:
    result = run_check(with_password(oci_registry.token_url, images=["airia/api:1.0", "private/secret:1.0"]))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert result.cause.startswith("pulling private/secret is denied: HTTP 401 UNAUTHORIZED")
    assert result.facts["digest airia/api:1.0"] == oci_registry.digests["airia/api:1.0"]


def test_a_rate_limit_is_named_with_the_registrys_headers() -> None:
    headers = {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600", "Retry-After": "3600"}
    with HttpServer(lambda _: Reply(429, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}', headers)) as server:
        result = run_check(registry(server.url, images=["library/nginx:1.27"]))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == (
        "the registry rate-limits this client (HTTP 429; ratelimit-limit: 100;w=21600, "
        "ratelimit-remaining: 0;w=21600, retry-after: 3600)"
    )


def test_bad_references_and_credentials_are_refused_in_the_config() -> None:
    base = "targets:\n- {name: r, kind: registry, url: 'https://registry.example'"
    assert "must be a repository with a tag or digest" in config_error(base + ", images: ['Bad Ref']}\n")
    assert "os/architecture" in config_error(base + ", platforms: [amd64]}\n")
    assert "username and password go together" in config_error(base + ", username: u}\n")


def test_the_registry_is_reached_through_the_proxy(
    oci_registry: OciRegistry, forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.open_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    result = run_check(with_password(oci_registry.token_url, images=["airia/api:1.0"]))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["proxy"] == forward_proxy.open_url


@pytest.mark.timeout(20)  # a parameter name tried at every letter took minutes for a hostile megabyte
def test_a_hostile_challenge_header_is_read_in_linear_time() -> None:
    header = "Bearer " + "a" * 1_000_000 + ' realm="https://auth.test/token",service="registry"'
    answer = Answer(401, "Unauthorized", httpx.Headers({"www-authenticate": header}), b"", "http://r.test/v2/", 0, 1.0)
    assert _challenge(answer) == ("Bearer", {"realm": "https://auth.test/token", "service": "registry"})
