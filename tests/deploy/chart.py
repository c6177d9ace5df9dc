"""Render the Helm chart with the real `helm` binary and pick objects out of the result."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import require, run

CHART = Path(__file__).resolve().parents[2] / "helm" / "airia-test-pod"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
GITOPS_EXAMPLES = CHART / "examples" / "gitops"
ARGO_JOB = GITOPS_EXAMPLES / "argocd" / "readiness-gate-presync.yaml"
NAMESPACE = "airia-readiness"
RELEASE = "readiness"


def template(*values: Path, kube_version: str = "1.29.0", sets: tuple[str, ...] = ()) -> str:
    """`helm template`; raises AssertionError with helm's own message when rendering fails."""
    command = [require("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    command += ["--kube-version", kube_version]
    for file in values:
        command += ["--values", str(file)]
    for assignment in sets:
        command += ["--set", assignment]
    result = run(command)
    assert result.returncode == 0, result.stderr
    return result.stdout


@functools.cache
def render(values: Path, kube_version: str = "1.29.0") -> str:
    """`template` of one values file, once per session: many tests read the same render."""
    return template(values, kube_version=kube_version)


def render_error(*values: Path, sets: tuple[str, ...] = ()) -> str:
    """helm's error for values it must reject (the test fails if helm accepts them)."""
    command = [require("helm"), "template", RELEASE, str(CHART), "--kube-version", "1.29.0"]
    for file in values:
        command += ["--values", str(file)]
    for assignment in sets:
        command += ["--set", assignment]
    result = run(command)
    assert result.returncode != 0, f"helm accepted values it should reject:\n{result.stdout[:2000]}"
    return result.stderr


def objects(rendered: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(rendered) if document]


def _hook_events(document: dict[str, Any]) -> set[str]:
    annotation = (document["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
    return {event.strip() for event in annotation.split(",") if event.strip()}


def one(rendered: str | list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    """The release's one object of `kind` (hooks left out: see `hook`)."""
    found = [
        o
        for o in (objects(rendered) if isinstance(rendered, str) else rendered)
        if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix) and not _hook_events(o)
    ]
    assert len(found) == 1, f"expected one {kind}{' *' + name_suffix if name_suffix else ''}, found {len(found)}"
    return found[0]


def container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec["containers"]
    return dict(only)


def hook(rendered: str | list[dict[str, Any]], event: str, kind: str = "Pod") -> dict[str, Any]:
    """The one hook object of `kind` that runs on `event` (test, pre-install, pre-delete ...)."""
    found = [
        o
        for o in (objects(rendered) if isinstance(rendered, str) else rendered)
        if o["kind"] == kind and event in _hook_events(o)
    ]
    assert len(found) == 1, f"expected one {kind} hook on {event}, found {len(found)}"
    return found[0]
