"""The cluster and storage kinds off the cluster: their config, how they reach an API server (a kubeconfig, the
pod's service account), and API servers on 127.0.0.1 that stall, refuse or reject the credentials. Everything
they do against a real Kubernetes is in tests/cluster/test_cluster_checks.py."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from app.checks.base import Stage, Status
from app.checks.cluster import ClusterTarget, Toleration
from app.checks.kube import quantity
from app.checks.storage import WRITER, StorageTarget, _writer_failure
from tests.certs import Certificates
from tests.checks import run_check
from tests.checks.helpers import config_error, parse
from tests.checks.http_server import HttpServer, Reply, Request
from tests.servers import StallServer


def kubeconfig(directory: Path, server: str, ca_file: Path, **user: str) -> Path:
    path = directory / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u", "namespace": "apps"}}],
                "current-context": "test",
            }
        )
    )
    return path


def test_the_kinds_are_configured_with_their_defaults() -> None:
    cluster, storage = parse(
        "targets:\n"
        "  - {name: k8s, kind: cluster, min_version: '1.29', min_gpus: 2, tolerations: [{key: gpu, operator: Exists}],"
        "     permissions: [{verb: create, resource: deployments, group: apps}]}\n"
        "  - {name: volumes, kind: storage, storage_class: fast, size: 2Gi}\n"
    )
    assert isinstance(cluster, ClusterTarget) and isinstance(storage, StorageTarget)
    assert cluster.gpu_resources == ["nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/*"]
    assert str(cluster.permissions[0]) == "create deployments.apps"
    assert cluster.effective_timeout == 20 and storage.effective_timeout == 120
    assert (storage.access_mode, storage.write_bytes, storage.image) == ("ReadWriteOnce", 16 * 2**20, None)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{name: v, kind: storage, size: 1Mi, write_bytes: 2000000}", "write_bytes (2000000) must fit in size (1Mi)"),
        ("{name: v, kind: storage, size: lots}", "targets[0].size"),
        ("{name: v, kind: storage, access_mode: ReadOnlyMany}", "targets[0].access_mode"),
        ("{name: k, kind: cluster, min_version: latest}", "targets[0].min_version"),
        ("{name: k, kind: cluster, permissions: [{verb: 'get pods', resource: pods}]}", "permissions[0].verb"),
        ("{name: k, kind: cluster, architectures: [x86]}", "targets[0].architectures[0]"),
        ("{name: k, kind: cluster, kubeconfig: /nonexistent/kubeconfig}", "targets[0].kubeconfig"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(target: str, message: str) -> None:
    assert message in config_error(f"targets:\n  - {target}\n")


def test_quantities_read_as_kubernetes_writes_them() -> None:
    assert quantity("3800m") == pytest.approx(3.8)
    assert quantity("16Gi") == 16 * 2**30
    assert quantity("2") == 2
    assert quantity("1500M") == 1.5e9
    with pytest.raises(ValueError, match="could not convert"):
        quantity("much")


def test_a_toleration_matches_as_the_scheduler_matches_it() -> None:
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    assert Toleration(key="nvidia.com/gpu", operator="Exists").tolerates(taint)
    assert Toleration(key="nvidia.com/gpu", value="present").tolerates(taint)
    assert not Toleration(key="nvidia.com/gpu", value="absent").tolerates(taint)
    assert not Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoExecute").tolerates(taint)
    assert Toleration(operator="Exists").tolerates(taint)


def test_outside_a_pod_without_a_kubeconfig_the_check_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = run_check(ClusterTarget(name="k8s", kind="cluster"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.RESOLVE)
    assert "KUBERNETES_SERVICE_HOST is unset" in (result.cause or "")


def test_in_a_pod_without_a_token_the_check_says_the_token_is_not_mounted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    result = run_check(StorageTarget(name="volumes", kind="storage"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert "no token mounted" in (result.cause or "")


def test_a_stalled_api_server_ends_the_check_on_time(tmp_path: Path, certs: Certificates, stall: StallServer) -> None:
    config = kubeconfig(tmp_path, f"https://127.0.0.1:{stall.port}", certs.ca_file, token="t0ken")
    started = time.monotonic()
    result = run_check(ClusterTarget(name="k8s", kind="cluster", kubeconfig=config, timeout=1.5))
    assert time.monotonic() - started < 3
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert "t0ken" not in json.dumps(result.model_dump(mode="json"))


def test_a_closed_api_port_fails_at_connect(tmp_path: Path, certs: Certificates, closed_port: int) -> None:
    config = kubeconfig(tmp_path, f"https://127.0.0.1:{closed_port}", certs.ca_file, token="t0ken")
    result = run_check(ClusterTarget(name="k8s", kind="cluster", kubeconfig=config))
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)


def test_a_rejected_token_fails_at_auth(tmp_path: Path, certs: Certificates) -> None:
    body = json.dumps({"kind": "Status", "message": "Unauthorized", "code": 401}).encode()
    with HttpServer(lambda _: Reply(401, body), certs.leaf("api")) as server:
        config = kubeconfig(tmp_path, server.url, certs.ca_file, token="expired-t0ken")
        result = run_check(StorageTarget(name="volumes", kind="storage", kubeconfig=config))
        assert server.requests[0].headers["authorization"] == "Bearer expired-t0ken"
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == "the API server does not accept the credentials (GET /version: 401 Unauthorized)"


def test_a_kubeconfig_without_the_named_context_is_refused_clearly(tmp_path: Path, certs: Certificates) -> None:
    config = kubeconfig(tmp_path, "https://127.0.0.1:1", certs.ca_file, token="t")
    result = run_check(ClusterTarget(name="k8s", kind="cluster", kubeconfig=config, context="elsewhere"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert "no context named 'elsewhere'" in (result.cause or "")


@pytest.mark.parametrize(
    ("report", "cause"),
    [
        (
            {"step": "write", "errno": "EROFS", "error": "Read-only file system"},
            "write: the volume is mounted read-only",
        ),
        ({"step": "write", "errno": "ENOSPC", "error": "No space left on device"}, "write: the volume is full"),
        ({"step": "write", "errno": "EACCES", "error": "Permission denied"}, "not writable by UID 10001"),
        ({"bytes": 10, "read_bytes": 10, "same": False, "write_s": 1, "read_s": 1}, "the data read back differs"),
        ({}, "the writer pod ended without a report (Error)"),
    ],
)
def test_what_the_writer_met_is_named(report: dict[str, object], cause: str) -> None:
    failure = _writer_failure(report, "Error")
    assert failure is not None and failure.stage == Stage.OPERATION
    assert cause in failure.cause


def test_a_writer_that_read_back_what_it_wrote_passes() -> None:
    assert _writer_failure({"bytes": 10, "read_bytes": 10, "same": True, "write_s": 1, "read_s": 1}, "") is None


def test_a_kubeconfig_that_is_not_yaml_is_refused_without_quoting_it(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("users: [{name: u, user: {token: s3cret-t0ken}}\n  - ]: :\n")
    result = run_check(ClusterTarget(name="k8s", kind="cluster", kubeconfig=config))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == f"kubeconfig {config}: not valid YAML"


def test_inline_certificates_are_loaded_and_a_forbidden_list_names_the_refusal(
    tmp_path: Path, certs: Certificates
) -> None:
    def api(request: Request) -> Reply:
        if request.path == "/version":
            return Reply(200, json.dumps({"gitVersion": "v1.31.2"}).encode())
        message = 'nodes is forbidden: User "system:serviceaccount:apps:reader" cannot list resource "nodes"'
        return Reply(403, json.dumps({"kind": "Status", "message": message, "code": 403}).encode())

    client = certs.leaf("client")
    inline = {
        "client-certificate-data": base64.b64encode(client.cert_file.read_bytes()).decode(),
        "client-key-data": base64.b64encode(client.key_file.read_bytes()).decode(),
    }
    with HttpServer(api, certs.leaf("api")) as server:
        config = kubeconfig(tmp_path, server.url, certs.ca_file, **inline)
        result = run_check(ClusterTarget(name="k8s", kind="cluster", kubeconfig=config, min_version="1.30"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert result.facts["kubernetes_version"] == "v1.31.2"
    assert result.cause == (
        'the API server refused GET /api/v1/nodes: nodes is forbidden: User "system:serviceaccount:apps:reader" '
        'cannot list resource "nodes"'
    )


def test_the_writer_writes_reads_back_and_reports_as_the_pod_runs_it(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(3 * 2**20 + 5), str(tmp_path), str(log)], check=False, timeout=60
    )
    report = json.loads(log.read_text())
    assert done.returncode == 0 and _writer_failure(report, "Completed") is None
    assert (report["bytes"], report["read_bytes"], report["same"]) == (3 * 2**20 + 5, 3 * 2**20 + 5, True)
    assert list(tmp_path.iterdir()) == [log]  # the scratch file is gone


def test_a_writer_that_cannot_write_reports_the_errno(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    done = subprocess.run([sys.executable, "-c", WRITER, "10", str(tmp_path / "absent"), str(log)], check=False)
    failure = _writer_failure(json.loads(log.read_text()), "Error")
    assert done.returncode == 1 and failure is not None
    assert failure.cause == "write: the writer failed (ENOENT: No such file or directory)"
