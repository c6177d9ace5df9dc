"""The chart installed as the README says, on the real cluster, against real targets in the node's namespace."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path

import httpx
import yaml

from tests.cluster import image, netns, node
from tests.cluster.conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    STALL_TIMEOUT,
    Targets,
    create_secret,
    helm,
    port_forward,
)
from tests.cluster.layout import NODE_NAME
from tests.cluster.release import auth_password, pod, run_through_the_api, statuses
from tests.deploy.dockerfile import DOCKERFILE, healthcheck, stages


def exec_python(pod_name: str, code: str) -> str:
    return node.kubectl("-n", NAMESPACE, "exec", pod_name, "--", "python", "-c", code)


def probe_counts(pod_name: str) -> dict[tuple[str, str], int]:
    """The kubelet's own count of the probes it ran against the pod, by (probe type, result)."""
    metrics = node.kubectl("get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/metrics/probes")
    counts: dict[tuple[str, str], int] = {}
    for line in metrics.splitlines():
        if line.startswith("prober_probe_total{") and f'pod="{pod_name}"' in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            counts[(labels["probe_type"], labels["result"])] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def test_install_waited_for_the_kubelet_probes(installed: str) -> None:
    server = pod()
    conditions = {c["type"]: c["status"] for c in server["status"]["conditions"]}
    assert conditions["Ready"] == conditions["ContainersReady"] == "True"
    (container,) = server["status"]["containerStatuses"]
    assert container["started"] and container["ready"] and container["restartCount"] == 0
    deadline = time.monotonic() + 40  # the liveness probe runs every 10 s
    counts = probe_counts(server["metadata"]["name"])
    while time.monotonic() < deadline and counts.get(("Liveness", "successful"), 0) < 1:
        time.sleep(2)
        counts = probe_counts(server["metadata"]["name"])
    print(f"\n[cluster] probes the kubelet ran: {counts}")
    for probe in ("Startup", "Readiness", "Liveness"):
        assert counts.get((probe, "successful"), 0) >= 1, counts
    # a startup probe may fail while the server starts (that is what it is for); the others never
    assert not [key for key in counts if key[0] != "Startup" and key[1] != "successful" and counts[key]], counts


def test_the_pod_runs_hardened_and_within_its_memory_limit(installed: str) -> None:
    server = pod()
    name = server["metadata"]["name"]
    status = exec_python(name, "print(open('/proc/1/status').read())")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[:2] == ["10001", "10001"]
    assert int(fields["CapEff"].strip(), 16) == 0
    assert int(fields["CapBnd"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    rss_mb = int(fields["VmRSS"].split()[0]) / 1024
    limit = server["spec"]["containers"][0]["resources"]["limits"]["memory"]
    print(f"\n[cluster] server RSS {rss_mb:.0f} MB (limit {limit})")
    assert rss_mb < int(limit.removesuffix("Mi"))
    probe = (
        "import os, pathlib\n"
        "try:\n    pathlib.Path('/opt/airia-test-pod/x').write_text('x'); print('writable')\n"
        "except OSError as e:\n    print('read-only', e.errno)\n"
        "print('token', os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount'))"
    )
    assert exec_python(name, probe).split() == ["read-only", "30", "token", "False"]


def test_the_image_healthcheck_passes_in_the_running_container(installed: str) -> None:
    _, command = healthcheck(stages(DOCKERFILE.read_text())[-1])
    node.kubectl("-n", NAMESPACE, "exec", pod()["metadata"]["name"], "--", *command)


def test_dashboard_through_port_forward_runs_and_passes(installed: str) -> None:
    run = run_through_the_api(installed, auth_password(f"{installed}-auth"))
    assert run["verdict"] == "ready", statuses(run)
    assert statuses(run) == dict.fromkeys(
        ("main-db", "artifacts", "kube-api", "cluster-dns", "node-http"), ("passed", None)
    ) | {"stalled-service": ("failed", "operation")}  # optional: the verdict stays ready
    facts = {r["name"]: r["facts"] for r in run["results"]}
    assert "10.96.0.1" in json.dumps(facts["cluster-dns"])  # resolved by the cluster's CoreDNS


def test_a_stalled_target_fails_at_its_stage_on_time_and_holds_nothing_up(installed: str) -> None:
    server = pod()["metadata"]["name"]
    before, password = probe_counts(server), auth_password(f"{installed}-auth")
    with (
        port_forward(NAMESPACE, f"service/{installed}", 8080) as port,
        netns.inside_node(),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        token = client.post("/api/token", data={"username": "admin", "password": password})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        started = client.post("/api/runs", headers=headers).json()["started_at"]
        # while the stalled check hangs, the endpoints the kubelet probes answer at once
        slowest, run = 0.0, None
        deadline = time.monotonic() + 60
        while run is None and time.monotonic() < deadline:
            for path in ("/health/ready", "/health/live"):
                asked = time.monotonic()
                assert client.get(path).status_code == 200, path
                slowest = max(slowest, time.monotonic() - asked)
            results = client.get("/api/results", headers=headers).json()
            if results["verdict"] is not None and results["started_at"] >= started:
                run = results
            time.sleep(0.2)
    assert run is not None, "the run did not finish within 60 s"
    (stalled,) = [r for r in run["results"] if r["name"] == "stalled-service"]
    assert (stalled["status"], stalled["stage"]) == ("failed", "operation"), stalled
    assert STALL_TIMEOUT * 1000 <= stalled["duration_ms"] < (STALL_TIMEOUT + 1) * 1000
    others = {name: verdict for name, verdict in statuses(run).items() if name != "stalled-service"}
    assert set(others.values()) == {("passed", None)}, others
    assert run["verdict"] == "ready"
    print(f"\n[cluster] probes' slowest answer while a target stalled: {slowest * 1000:.0f} ms")
    # the first probes are asked as the stall begins: held by it, they would take most of its timeout
    assert slowest < STALL_TIMEOUT / 2, f"slowest probe took {slowest * 1000:.0f} ms"
    after = probe_counts(server)
    assert {key: n for key, n in after.items() if key[1] != "successful"} == {
        key: n for key, n in before.items() if key[1] != "successful"
    }, (before, after)


def test_helm_test_passes_for_the_healthy_release(installed: str) -> None:
    result = helm("test", RELEASE, "--namespace", NAMESPACE, "--logs")
    assert re.search(r"Phase:\s+Succeeded", result.stdout), result.stdout
    assert "READY" in result.stdout


def test_a_rotated_password_reaches_the_next_run_without_a_restart(installed: str, targets: Targets) -> None:
    before = pod()
    password = auth_password(f"{installed}-auth")
    targets.postgres.rotate_password()  # the platform's database changed its password ...
    run = run_through_the_api(installed, password)
    assert statuses(run)["main-db"] == ("failed", "auth")  # ... so the pod must say so, not report the old one
    failing = helm("test", RELEASE, "--namespace", NAMESPACE, "--logs", check=False)
    assert failing.returncode != 0
    assert "NOT READY" in failing.stdout

    create_secret(NAMESPACE, "airia-postgres", {"password": targets.postgres.password})  # ... and the Secret follows
    deadline = time.monotonic() + 120  # the kubelet refreshes Secret volumes on its sync period
    while True:
        run = run_through_the_api(installed, password)
        if statuses(run)["main-db"] == ("passed", None) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert run["verdict"] == "ready", statuses(run)
    after = pod()
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    helm("test", RELEASE, "--namespace", NAMESPACE, "--logs")


def test_a_release_with_a_wrong_password_installs_and_its_helm_test_says_why(
    installed: str, app_image: image.BuiltImage, targets: Targets, tmp_path: Path
) -> None:
    create_secret(NAMESPACE, "wrong-postgres", {"password": "not-the-password"})
    values = tmp_path / "broken.yaml"
    values.write_text(yaml.safe_dump(targets.values(app_image, postgres_secret="wrong-postgres")))
    helm("install", "broken", str(CHART), "--namespace", NAMESPACE, "-f", str(values), "--wait", "--timeout", "180s")
    try:
        result = helm("test", "broken", "--namespace", NAMESPACE, "--logs", check=False)
        assert result.returncode != 0
        assert "NOT READY" in result.stdout
        assert "main-db" in result.stdout and "auth" in result.stdout and "fix:" in result.stdout
        assert "not-the-password" not in result.stdout + result.stderr
    finally:
        helm("uninstall", "broken", "--namespace", NAMESPACE, "--wait")
    deadline = time.monotonic() + 90  # the server pod goes with its Deployment; the test pod with the hook
    leftovers = "?"
    while leftovers and time.monotonic() < deadline:
        leftovers = node.kubectl(
            "-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/instance=broken", "-o", "name"
        )
        time.sleep(2)
    assert leftovers == ""


def test_install_refuses_config_the_app_rejects_naming_the_field(
    installed: str, app_image: image.BuiltImage, targets: Targets, tmp_path: Path
) -> None:
    values = targets.values(app_image)
    values["targets"][0] |= {"sslmode": "disable", "sslrootcert": "/etc/ssl/certs/ca-certificates.crt"}
    file = tmp_path / "invalid.yaml"
    file.write_text(yaml.safe_dump(values))
    result = helm("install", "invalid", str(CHART), "--namespace", NAMESPACE, "-f", str(file), check=False)
    assert result.returncode != 0
    # helm prints the app's own message from the validation pod's log
    assert re.search(r"targets\[0\].*sslrootcert is only used with sslmode", result.stderr), result.stderr
    assert (
        node.kubectl("-n", NAMESPACE, "get", "deploy,pods", "-l", "app.kubernetes.io/instance=invalid", "-o", "name")
        == ""
    )
    helm("uninstall", "invalid", "--namespace", NAMESPACE, check=False)


def _auth_data(secret: str) -> dict[str, str]:
    return dict(json.loads(node.kubectl("-n", NAMESPACE, "get", "secret", secret, "-o", "json"))["data"])


def test_an_upgrade_with_another_target_list_rolls_the_pod_and_keeps_the_generated_secret(
    installed: str, app_image: image.BuiltImage, targets: Targets, tmp_path: Path
) -> None:
    before, auth_before = pod(), _auth_data(f"{installed}-auth")
    values = targets.values(app_image)
    values["targets"].append({"name": "node-http-again", "kind": "http", "url": targets.http_url})
    file = tmp_path / "more-targets.yaml"
    file.write_text(yaml.safe_dump(values))
    helm("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(file), "--wait", "--timeout", "180s")
    after = pod()
    assert after["metadata"]["uid"] != before["metadata"]["uid"]  # checksum/config changed
    assert _auth_data(f"{installed}-auth") == auth_before  # lookup kept the password and the signing key
    run = run_through_the_api(installed, auth_password(f"{installed}-auth"))
    assert statuses(run)["node-http-again"] == ("passed", None)


def test_an_existing_auth_secret_is_what_the_dashboard_accepts(
    installed: str, app_image: image.BuiltImage, targets: Targets, tmp_path: Path
) -> None:
    password = "operator-chosen-" + base64.b32encode(os.urandom(10)).decode()
    create_secret(
        NAMESPACE, "operator-auth", {"auth_password": password, "secret_key": base64.b64encode(os.urandom(48)).decode()}
    )
    values = targets.values(app_image) | {"auth": {"existingSecret": "operator-auth"}}
    file = tmp_path / "existing-secret.yaml"
    file.write_text(yaml.safe_dump(values))
    helm("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(file), "--wait", "--timeout", "180s")
    assert auth_password("operator-auth") == password
    assert run_through_the_api(installed, password)["verdict"] == "ready"
