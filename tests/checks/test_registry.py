"""The registry of kinds is the only list: a kind added to it alone is accepted by the config, rendered by every
report, the dashboard and the metrics, and present in the chart's generated schema."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from pydantic import SecretStr

from app import checks, report
from app.checks import facts
from app.checks.base import Host, Probe, Stage, Target
from app.config import ConfigError, Settings, parse_targets
from app.main import create_app
from app.runner import run_targets
from tests.deploy import chart_schema
from tests.web.helpers import PASSWORD, SECRET_KEY, bearer, login, wait_for_verdict, write_targets

with warnings.catch_warnings():  # starlette's notice about a future httpx successor, irrelevant here
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "throwaway-token-5d1e9"


class ThrowawayTarget(Target):
    """A kind that exists only in this test: one module's worth of target model and check."""

    default_timeout: ClassVar[float] = 3.0

    kind: Literal["throwaway"]
    host: Host
    token: SecretStr
    shout: bool = False

    def check(self, probe: Probe) -> None:
        with probe.step("look", Stage.OPERATION):
            probe.note(f"looked at {self.host} with {self.token.get_secret_value()}")
        probe.facts[facts.LATENCY_MS] = 1.5
        if self.shout:
            probe.warn(Stage.OPERATION, f"{self.host} shouts", "ask it to speak softly")


@pytest.fixture
def registered() -> Iterator[None]:
    """ThrowawayTarget added to the registry, as its one line in app/checks/__init__.py would."""
    kinds = checks.KINDS
    checks.KINDS = (*kinds, ThrowawayTarget)
    yield
    checks.KINDS = kinds


TARGET = {"name": "odd-one", "kind": "throwaway", "host": "example.invalid", "token": TOKEN, "shout": True}


def test_the_registry_is_the_list_of_kinds() -> None:
    names = list(checks.kind_models())
    assert names == [checks.kind_of(model) for model in checks.KINDS]
    assert len(names) == len(set(names))


def test_an_unregistered_kind_is_refused_naming_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_targets(json.dumps({"targets": [TARGET]}), "targets.yaml", {})
    assert "targets[0]: unknown kind 'throwaway'; expected one of" in str(refused.value)
    assert "'s3'" in str(refused.value)


@pytest.mark.usefixtures("registered")
def test_a_registered_kind_is_accepted_and_validated_by_the_config() -> None:
    [target] = parse_targets(json.dumps({"targets": [TARGET]}), "targets.yaml", {})
    assert isinstance(target, ThrowawayTarget)
    assert target.secrets() == [TOKEN]
    with pytest.raises(ConfigError) as refused:
        parse_targets(json.dumps({"targets": [{**TARGET, "colour": "red"}]}), "targets.yaml", {})
    assert str(refused.value) == "targets[0].colour: unknown key (check its spelling) (line 1)"


@pytest.mark.usefixtures("registered")
def test_a_registered_kind_is_rendered_by_every_report() -> None:
    targets = parse_targets(json.dumps({"targets": [TARGET]}), "targets.yaml", {})
    run = asyncio.run(run_targets(targets))
    [result] = run.results
    assert (result.kind, result.status, result.cause) == ("throwaway", "warning", "example.invalid shouts")
    for name, renderer in report.RENDERERS.items():
        text = renderer.render(run)
        assert "odd-one" in text and "throwaway" in text, name
        assert TOKEN not in text, name


@pytest.mark.usefixtures("registered")
def test_a_registered_kind_is_in_the_generated_chart_schema() -> None:
    definitions = chart_schema.target_definitions()
    assert "throwaway" in definitions["target"]["properties"]["kind"]["enum"]
    own = definitions["target.throwaway"]
    assert set(own["properties"]) == {
        "name",
        "kind",
        "required",
        "timeout",
        "description",
        "host",
        "shout",
        "secretRefs",
    }
    assert own["required"] == ["name", "kind", "host", "secretRefs"]  # the token comes from a Secret only
    assert own["properties"]["secretRefs"]["required"] == ["token"]


@pytest.mark.usefixtures("registered")
def test_a_registered_kind_is_on_the_dashboard_api_and_metrics(tmp_path: Path) -> None:
    empty = Settings(config=write_targets(tmp_path, [], "empty.yaml"), auth_password=PASSWORD, secret_key=SECRET_KEY)
    with TestClient(create_app(empty), follow_redirects=False) as client:
        login(client)
        assert "throwaway" in client.get("/").text  # the kinds the empty state lists

    settings = Settings(
        config=write_targets(tmp_path, [TARGET]), auth_password=PASSWORD, secret_key=SECRET_KEY, run_on_start=False
    )
    with TestClient(create_app(settings), follow_redirects=False) as client:
        login(client)
        assert 'data-target="odd-one"' in client.get("/").text
        headers = bearer(client)
        assert client.post("/api/runs", headers=headers).status_code == 202
        document = wait_for_verdict(client, headers)
        assert [(r["kind"], r["status"]) for r in document["results"]] == [("throwaway", "warning")]
        for format in ("json", "junit", "html"):
            answer = client.get("/api/report", params={"format": format}, headers=headers)
            assert answer.status_code == 200 and "throwaway" in answer.text and TOKEN not in answer.text
        metrics = client.get("/metrics", headers=headers).text
        assert 'testpod_target_status{kind="throwaway",status="warning",target="odd-one"} 1.0' in metrics
