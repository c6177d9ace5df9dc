"""The cluster and storage kinds on the real cluster, with the chart's own RBAC.

A release with a cluster and a storage target is installed: its service account and roles are what the chart
creates. The checks then run in this process, inside the node's namespace, with a kubeconfig holding that service
account's token (or one of an account with no rights), as the pod would run them; `helm test` runs them in a pod.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.checks.base import Stage, Status, Target
from app.checks.cluster import ClusterTarget, Permission, Toleration
from app.checks.storage import MANAGED_BY, StorageTarget
from app.results import Result
from tests.checks import run_check
from tests.cluster import image, netns, node
from tests.cluster.conftest import CHART, helm
from tests.cluster.layout import APISERVER_PORT, NODE_IP, NODE_NAME, pki_dir
from tests.servers import StallServer

NAMESPACE = "airia-kube-checks"
RELEASE = "kube-checks"
ACCOUNT = f"{RELEASE}-airia-test-pod"  # the chart's service account
NO_PROVISIONER = "airia-no-provisioner"
GPU = "nvidia.com/gpu"


def kubeconfig(path: Path, account: str) -> Path:
    """A kubeconfig with a fresh token of `account` in NAMESPACE, as the pod's mounted token would be."""
    token = node.kubectl("-n", NAMESPACE, "create", "token", account, "--duration=1h").strip()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "test",
                        "cluster": {
                            "server": f"https://{NODE_IP}:{APISERVER_PORT}",
                            "certificate-authority": str(pki_dir() / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": account, "namespace": NAMESPACE}}],
                "current-context": "test",
            }
        )
    )
    return path


def check(target: Target) -> Result:
    """The check as the runner runs it, from inside the node's network namespace."""
    with netns.inside_node():
        return run_check(target)


def scratch_objects() -> list[str]:
    listed = node.kubectl("-n", NAMESPACE, "get", "pods,pvc", "-l", MANAGED_BY, "-o", "name")
    return listed.split()


@pytest.fixture(scope="module")
def release(app_image: image.BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[image.BuiltImage]:
    """The chart with a cluster and a storage target: its RBAC and token come with them."""
    values = tmp_path_factory.mktemp("kube-values") / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": app_image.repository, "tag": app_image.tag},
                "runOnStart": False,
                "targets": [
                    {"name": "kubernetes", "kind": "cluster", "min_version": "1.30", "architectures": ["amd64"]},
                    {"name": "volumes", "kind": "storage", "size": "64Mi", "write_bytes": 4 * 2**20, "timeout": 90},
                ],
            }
        )
    )
    node.kubectl("create", "namespace", NAMESPACE)
    node.kubectl("-n", NAMESPACE, "create", "serviceaccount", "nobody")
    helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values), "--wait", "--timeout", "180s")
    yield app_image
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
    node.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False)


@pytest.fixture(scope="module")
def token(release: image.BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kubeconfig(tmp_path_factory.mktemp("sa") / "kubeconfig", ACCOUNT)


def storage(config: Path, built: image.BuiltImage, **fields: Any) -> StorageTarget:
    settings = {"size": "64Mi", "write_bytes": 8 * 2**20, "image": built.name, "timeout": 60, **fields}
    return StorageTarget(name="volumes", kind="storage", kubeconfig=config, **settings)


def test_helm_test_runs_both_checks_in_a_pod_with_the_charts_rbac(release: image.BuiltImage) -> None:
    result = helm("test", RELEASE, "--namespace", NAMESPACE, "--logs", timeout=300)
    assert "READY" in result.stdout and "NOT READY" not in result.stdout, result.stdout
    assert scratch_objects() == []


def test_the_local_path_class_binds_writes_and_reads_back(token: Path, release: image.BuiltImage) -> None:
    result = check(storage(token, release))
    assert result.status == Status.PASSED, (result.cause, result.steps)
    facts = result.facts
    assert (facts["storage_class"], facts["provisioner"]) == ("local-path", "rancher.io/local-path")
    assert (facts["binding_mode"], facts["reclaim_policy"]) == ("WaitForFirstConsumer", "Delete")
    assert facts["written_bytes"] == 8 * 2**20
    assert float(str(facts["write_mib_s"])) > 0 and float(str(facts["read_mib_s"])) > 0
    names = [step.name for step in result.steps]
    assert names[-5:] == ["leftovers", "claim", "writer pod", "bind", "write and read"]
    assert scratch_objects() == []
    print(
        f"\n[storage] write {facts['write_mib_s']} MiB/s, read {facts['read_mib_s']} MiB/s, bind {facts['bind_ms']} ms"
    )


def test_a_class_whose_provisioner_never_answers_is_named(token: Path, release: image.BuiltImage) -> None:
    node.apply(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": NO_PROVISIONER},
            "provisioner": "airia.example/absent",
            "volumeBindingMode": "Immediate",
        }
    )
    try:
        result = check(storage(token, release, storage_class=NO_PROVISIONER, timeout=12))
    finally:
        node.kubectl("delete", "storageclass", NO_PROVISIONER, check=False)
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause is not None and result.cause.startswith("no provisioner answered: the claim is still Pending")
    assert "airia.example/absent" in result.cause  # the claim's own event, quoted
    assert "airia.example/absent" in (result.remediation or "")
    assert scratch_objects() == []


def test_a_missing_class_is_named(token: Path, release: image.BuiltImage) -> None:
    result = check(storage(token, release, storage_class="fast-ssd"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == "no StorageClass fast-ssd (classes: local-path)"


def test_a_quota_that_refuses_the_claim_is_named(token: Path, release: image.BuiltImage) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "tiny", "namespace": NAMESPACE},
        "spec": {"hard": {"requests.storage": "1Mi"}},
    }
    node.apply(quota)
    try:
        deadline = time.monotonic() + 30  # the quota controller fills in its status before admission enforces it
        while (
            not json.loads(node.kubectl("-n", NAMESPACE, "get", "resourcequota", "tiny", "-o", "json"))
            .get("status", {})
            .get("hard")
        ):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        result = check(storage(token, release))
    finally:
        node.kubectl("-n", NAMESPACE, "delete", "resourcequota", "tiny", check=False)
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause is not None and result.cause.startswith("the claim for 64Mi was refused:")
    assert "exceeded quota: tiny" in result.cause
    assert "ResourceQuota" in (result.remediation or "")


def test_an_unschedulable_writer_pod_is_named_with_the_schedulers_reason(
    token: Path, release: image.BuiltImage
) -> None:
    result = check(storage(token, release, node_selector={"airia.example/pool": "absent"}, timeout=12))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause is not None and result.cause.startswith("the writer pod was not scheduled: FailedScheduling")
    assert "node affinity/selector" in result.cause
    assert scratch_objects() == []


def test_a_service_account_without_the_rights_fails_at_permission(release: image.BuiltImage, tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", "nobody")
    deployments = Permission(verb="create", resource="deployments", group="apps")
    result = check(ClusterTarget(name="k", kind="cluster", kubeconfig=config, permissions=[deployments]))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert result.cause == f"not allowed: create deployments.apps in namespace {NAMESPACE}"
    result = check(storage(config, release))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert f"not allowed in namespace {NAMESPACE}: create persistentvolumeclaims" in (result.cause or "")
    result = check(ClusterTarget(name="k", kind="cluster", kubeconfig=config))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert 'cannot list resource "nodes"' in (result.cause or "")


def test_the_version_nodes_and_their_resources(token: Path) -> None:
    result = check(
        ClusterTarget(name="k", kind="cluster", kubeconfig=token, min_version="1.34", architectures=["amd64"])
    )
    assert result.status == Status.PASSED, result.cause
    assert str(result.facts["kubernetes_version"]).startswith("v1.34.")
    assert (result.facts["nodes_total"], result.facts["nodes_usable"], result.facts["architectures"]) == (1, 1, "amd64")
    assert float(str(result.facts["allocatable_cpu"])) > 0
    failures = {
        "min_version": ("1.99", "Kubernetes v1.34"),
        "min_node_memory": ("4Ti", f"0 usable node(s), at least 1 needed: {NODE_NAME} ("),
        "min_total_cpu": ("1000", "allocatable CPU in all, 1000 needed"),
        "architectures": (["arm64"], "no usable node runs arm64 (found: amd64)"),
        "node_selector": ({"airia.example/pool": "gpu"}, "0 usable node(s) matching airia.example/pool=gpu"),
        "ingress_class": ("nginx", "no IngressClass nginx (found: none)"),
    }
    for field, (value, cause) in failures.items():
        result = check(ClusterTarget(name="k", kind="cluster", kubeconfig=token, **{field: value}))
        assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION), field
        assert cause in (result.cause or ""), (field, result.cause)


@pytest.fixture
def gpu_node() -> Iterator[None]:
    """Two GPUs advertised in the node's status, as a device plugin's registration makes the kubelet do."""
    patch = [{"op": "add", "path": f"/status/capacity/{GPU.replace('/', '~1')}", "value": "2"}]
    node.kubectl("patch", "node", NODE_NAME, "--subresource=status", "--type=json", "-p", json.dumps(patch))
    deadline = time.monotonic() + 60  # the kubelet derives allocatable from capacity at its next status update
    while GPU not in json.loads(node.kubectl("get", "node", NODE_NAME, "-o", "json"))["status"]["allocatable"]:
        assert time.monotonic() < deadline, "the kubelet never made the GPUs allocatable"
        time.sleep(1)
    yield
    node.kubectl("taint", "node", NODE_NAME, f"{GPU}-", check=False)
    for field in ("capacity", "allocatable"):  # one patch each: the kubelet may have dropped allocatable already
        removal = [{"op": "remove", "path": f"/status/{field}/{GPU.replace('/', '~1')}"}]
        node.kubectl(
            "patch", "node", NODE_NAME, "--subresource=status", "--type=json", "-p", json.dumps(removal), check=False
        )


@pytest.mark.usefixtures("gpu_node")
def test_gpus_advertised_by_the_node_count_until_a_taint_makes_it_unusable(token: Path) -> None:
    result = check(ClusterTarget(name="k", kind="cluster", kubeconfig=token, min_gpus=2))
    assert result.status == Status.PASSED, result.cause
    assert (result.facts["gpus"], result.facts["gpus_per_pool"]) == (2, f"{NODE_NAME}: 2")

    node.kubectl("taint", "node", NODE_NAME, f"{GPU}=present:NoSchedule")
    result = check(ClusterTarget(name="k", kind="cluster", kubeconfig=token, min_gpus=1, min_nodes=0))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == (
        f"0 GPU(s) (nvidia.com/gpu, amd.com/gpu, gpu.intel.com/*) on usable nodes, at least 1 needed: {NODE_NAME} "
        f"has 2 but is unusable (taint {GPU}=present:NoSchedule not tolerated)"
    )
    tolerated = [Toleration(key=GPU, operator="Exists", effect="NoSchedule")]
    result = check(ClusterTarget(name="k", kind="cluster", kubeconfig=token, min_gpus=2, tolerations=tolerated))
    assert result.status == Status.PASSED, result.cause


def test_a_stalled_api_server_ends_the_check_on_time(tmp_path: Path) -> None:
    with netns.inside_node():
        stall = StallServer()  # on the node's own loopback
    try:
        config = tmp_path / "kubeconfig"
        config.write_text(
            yaml.safe_dump(
                {
                    "clusters": [
                        {
                            "name": "c",
                            "cluster": {
                                "server": f"https://127.0.0.1:{stall.port}",
                                "certificate-authority": str(pki_dir() / "ca.crt"),
                            },
                        }
                    ],
                    "users": [{"name": "u", "user": {"token": "unused"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        started = time.monotonic()
        result = check(ClusterTarget(name="k", kind="cluster", kubeconfig=config, timeout=3))
        assert time.monotonic() - started < 4.5
    finally:
        stall.close()
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)


def test_the_leftovers_of_a_killed_run_are_removed_by_the_next(
    token: Path, release: image.BuiltImage, tmp_path: Path
) -> None:
    target = {
        "name": "interrupted",
        "kind": "storage",
        "kubeconfig": str(token),
        "image": release.name,
        "size": "64Mi",
        "write_bytes": 1024,
        "timeout": 25,
        "node_selector": {"airia.example/pool": "absent"},  # the writer pod waits, so the run is caught mid-way
    }
    config = tmp_path / "targets.yaml"
    config.write_text(yaml.safe_dump({"targets": [target]}))
    run = subprocess.Popen(
        netns.command([sys.executable, "-m", "app", "check", "--config", str(config)]),
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while len(scratch_objects()) < 2:  # the claim and the writer pod
            assert time.monotonic() < deadline and run.poll() is None, "the run never created its scratch objects"
            time.sleep(0.3)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    left = scratch_objects()
    assert len(left) == 2
    time.sleep(25 + 3)  # older than the target's timeout (and the clean-up grace): no run can still use them
    del target["node_selector"]
    result = check(StorageTarget.model_validate(target))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["leftovers_removed"] == 2
    deadline = time.monotonic() + 30
    while scratch_objects():
        assert time.monotonic() < deadline, scratch_objects()
        time.sleep(0.5)
