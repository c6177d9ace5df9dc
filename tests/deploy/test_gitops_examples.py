"""The GitOps examples shipped with the chart (helm/airia-test-pod/examples/gitops/): an Argo CD PreSync hook Job
and its Flux form. They are valid Kubernetes (kubeconform and kubernetes-validate, strict), run the CLI's `gate`
with arguments its own parser accepts, aim at the Service the chart makes under the README's names, and run as
hardened as the chart's pods. The cluster test runs the Argo CD one on a real cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.cli import build_parser
from tests.deploy.chart import (
    ARGO_JOB,
    CHART,
    CI_VALUES,
    GITOPS_EXAMPLES,
    NAMESPACE,
    RELEASE,
    container,
    objects,
    one,
    render,
)
from tests.deploy.tools import KUBE_VERSIONS, kubeconform

FLUX_GATE = GITOPS_EXAMPLES / "flux" / "readiness-gate"
FLUX_KUSTOMIZATIONS = GITOPS_EXAMPLES / "flux" / "kustomizations.yaml"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def flux_job() -> dict[str, Any]:
    """kustomize's build of readiness-gate/: it only sets the namespace of its resources (asserted here)."""
    (kustomization,) = documents(FLUX_GATE / "kustomization.yaml")
    assert set(kustomization) == {"apiVersion", "kind", "namespace", "resources"}
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    built = [d for resource in kustomization["resources"] for d in documents(FLUX_GATE / resource)]
    for document in built:
        document["metadata"]["namespace"] = kustomization["namespace"]
    (job,) = built
    return job


def argo_job() -> dict[str, Any]:
    (job,) = documents(ARGO_JOB)
    return job


def test_the_examples_ship_with_the_chart_and_are_not_templates() -> None:
    assert GITOPS_EXAMPLES.parent.parent == CHART
    ignored = (CHART / ".helmignore").read_text().split()
    assert not any(pattern.startswith("examples") for pattern in ignored)  # packaged ...
    rendered = objects(render(CI_VALUES[0]))
    assert not [o for o in rendered if o["metadata"]["name"] == "airia-readiness-gate"]  # ... never rendered


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_the_jobs_are_valid_kubernetes(kube_version: str, kubeconform_schemas: Path, tmp_path: Path) -> None:
    jobs = [argo_job(), flux_job()]
    for job in jobs:
        kubernetes_validate.validate(job, kube_version, strict=True)
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(yaml.safe_dump_all(jobs))
    result = kubeconform(manifest, kube_version, kubeconform_schemas)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid: 2, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout


def test_kubeconform_rejects_a_job_with_a_misspelt_field(kubeconform_schemas: Path, tmp_path: Path) -> None:
    job = argo_job()
    job["spec"]["backofLimit"] = job["spec"].pop("backoffLimit")
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job))
    result = kubeconform(manifest, KUBE_VERSIONS[0], kubeconform_schemas)
    assert result.returncode == 1 and "backofLimit" in result.stdout


def test_the_argo_cd_job_is_a_presync_hook_replaced_before_the_next_one() -> None:
    job = argo_job()
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_flux_job_is_the_argo_cd_job_without_the_hook() -> None:
    argo, flux = argo_job(), flux_job()
    assert flux["spec"] == argo["spec"]
    assert "annotations" not in flux["metadata"]
    assert flux["metadata"]["name"] == argo["metadata"]["name"]


def test_the_platform_kustomization_waits_for_the_gate_job() -> None:
    gate, platform = documents(FLUX_KUSTOMIZATIONS)
    for kustomization in (gate, platform):
        assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
        assert kustomization["kind"] == "Kustomization"
        assert {"interval", "sourceRef", "path", "prune"} <= set(kustomization["spec"])
    assert gate["spec"]["path"].rstrip("/").endswith(FLUX_GATE.name)
    assert gate["spec"]["wait"] is True  # the Job's completion is the Kustomization's health
    assert gate["spec"]["force"] is True  # a changed Job is replaced, so it runs again
    deadline = flux_job()["spec"]["activeDeadlineSeconds"]
    assert _seconds(gate["spec"]["timeout"]) > deadline
    assert platform["spec"]["dependsOn"] == [{"name": gate["metadata"]["name"]}]


def _seconds(duration: str) -> int:
    value, unit = int(duration[:-1]), duration[-1]
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


@pytest.mark.parametrize("job", [argo_job(), flux_job()], ids=["argocd", "flux"])
def test_the_job_runs_the_gate_command_on_the_charts_service(job: dict[str, Any]) -> None:
    gate = container(job["spec"]["template"]["spec"])
    args = build_parser().parse_args(gate["args"])
    assert (args.command, args.wait, args.max_age) == ("gate", 120, 300)
    service = one(render(CI_VALUES[0]), "Service")
    assert service["metadata"]["name"] == f"{RELEASE}-airia-test-pod"
    assert args.url == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{VALUES['service']['port']}"
    assert args.token_file.startswith(next(m["mountPath"] for m in gate["volumeMounts"]) + "/")
    repository, _, tag = gate["image"].rpartition(":")
    assert repository == VALUES["image"]["repository"] and tag
    assert "env" not in gate or all("value" not in e or "TOKEN" not in e["name"] for e in gate["env"])


@pytest.mark.parametrize("job", [argo_job(), flux_job()], ids=["argocd", "flux"])
def test_the_job_runs_as_hardened_as_the_charts_pods(job: dict[str, Any]) -> None:
    deployment = one(render(CI_VALUES[0]), "Deployment")["spec"]["template"]["spec"]
    spec = job["spec"]["template"]["spec"]
    assert spec["securityContext"] == deployment["securityContext"]
    gate, server = container(spec), container(deployment)
    assert gate["securityContext"] == server["securityContext"]
    assert spec["automountServiceAccountToken"] is False
    assert {"cpu", "memory"} <= set(gate["resources"]["limits"]) & set(gate["resources"]["requests"])
    (volume,) = spec["volumes"]
    assert volume["secret"]["defaultMode"] == 0o440  # group-readable: the container runs as fsGroup's member
