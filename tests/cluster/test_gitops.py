"""The Argo CD PreSync hook Job the chart ships (examples/gitops/argocd/), on the real cluster: Argo CD is not
there, so the Job runs as Kubernetes runs it, in the platform's namespace, with a gate token created through the
API in a Secret beside it. It completes while the targets are ready, and fails, naming the target, when a
required one is not.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import yaml

from tests.cluster import image, netns, node
from tests.cluster.conftest import NAMESPACE, Targets, create_secret, port_forward
from tests.cluster.release import auth_password, run_through_the_api, statuses
from tests.deploy.chart import ARGO_JOB

PLATFORM = "airia"  # the platform's namespace, as the example's comments name it
JOB_DEADLINE = 240  # the example's activeDeadlineSeconds is 300; the gate answers within --wait 120


def gate_tokens(service: str, password: str, method: str, path: str = "", **kwargs: Any) -> httpx.Response:
    """The admin's gate-token API, signed in through a port-forward to the Service."""
    with (
        port_forward(NAMESPACE, f"service/{service}", 8080) as port,
        netns.inside_node(),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        login = client.post("/api/token", data={"username": "admin", "password": password})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        return client.request(method, f"/api/gate-tokens{path}", headers=headers, **kwargs)


def example_job(built: image.BuiltImage) -> dict[str, Any]:
    """The example as shipped, with the image this cluster has in place of the release's registry image."""
    job: dict[str, Any] = yaml.safe_load(ARGO_JOB.read_text())
    job["metadata"]["namespace"] = PLATFORM
    job["spec"]["template"]["spec"]["containers"][0]["image"] = built.name
    return job


def run_job(job: dict[str, Any]) -> tuple[str, float, str]:
    """Apply the Job as Argo CD does for a hook with BeforeHookCreation (the previous one deleted first); wait for
    its Complete or Failed condition. Returns that condition, the seconds from apply to it, and the pod's log."""
    name = job["metadata"]["name"]
    node.kubectl("-n", PLATFORM, "delete", "job", name, "--ignore-not-found", "--wait=true", "--cascade=foreground")
    started = time.monotonic()
    node.apply(job)
    while time.monotonic() - started < JOB_DEADLINE:
        status = json.loads(node.kubectl("-n", PLATFORM, "get", "job", name, "-o", "json"))["status"]
        finished = [c["type"] for c in status.get("conditions", []) if c["type"] in ("Complete", "Failed")]
        if finished:
            elapsed = time.monotonic() - started
            log = node.kubectl("-n", PLATFORM, "logs", f"job/{name}", check=False)
            return finished[0], elapsed, log
        time.sleep(1)
    raise AssertionError(f"the Job did not finish within {JOB_DEADLINE} s")


def test_the_argo_cd_presync_job_completes_when_ready_and_fails_naming_a_target_that_is_not(
    installed: str, app_image: image.BuiltImage, targets: Targets
) -> None:
    password = auth_password(f"{installed}-auth")
    created = gate_tokens(installed, password, "POST", json={"name": "argocd presync"})  # what the admin does once
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    node.kubectl("create", "namespace", PLATFORM)
    try:
        create_secret(PLATFORM, "airia-readiness-gate", {"token": token})
        job = example_job(app_image)

        condition, seconds, log = run_job(job)
        print(f"\n[cluster] the gate Job on ready targets: {condition} in {seconds:.1f} s")
        assert condition == "Complete", log
        assert re.match(
            r"READY: every required target is ready \(\d+ target\(s\), oldest result \d+ s old\)\n$", log
        ), log

        targets.postgres.rotate_password()  # the platform's database changed its password; the Secret did not
        assert statuses(run_through_the_api(installed, password))["main-db"] == ("failed", "auth")
        condition, seconds, log = run_job(job)
        print(f"[cluster] the gate Job with main-db failing: {condition} in {seconds:.1f} s")
        assert condition == "Failed", log
        verdict, *failing = log.splitlines()
        assert verdict.startswith("NOT READY: 1 required target(s) not ready: main-db ("), log
        assert len(failing) == 1 and failing[0].startswith("  main-db (postgres): failed at auth: "), log
        assert token not in log
        pods = json.loads(
            node.kubectl("-n", PLATFORM, "get", "pods", "-l", "job-name=airia-readiness-gate", "-o", "json")
        )
        (pod,) = pods["items"]  # backoffLimit 0: one verdict, not retried
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    finally:
        node.kubectl("delete", "namespace", PLATFORM, "--wait=true", "--timeout=120s", check=False)
        _restore_the_database_secret(installed, password, targets)
        assert gate_tokens(installed, password, "DELETE", f"/{created.json()['id']}").status_code == 204


def _restore_the_database_secret(service: str, password: str, targets: Targets) -> None:
    """The release other tests share is left ready: the Secret follows the new password and a run proves it."""
    create_secret(NAMESPACE, "airia-postgres", {"password": targets.postgres.password})
    deadline = time.monotonic() + 120  # the kubelet refreshes Secret volumes on its sync period
    while True:
        run = run_through_the_api(service, password)
        if run["verdict"] == "ready" or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert run["verdict"] == "ready", statuses(run)
