"""The harness itself: isolation, cluster DNS and dynamic volumes inside pods, and recovery after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

from tests.cluster import netns, node
from tests.cluster.conftest import MemoryWatch
from tests.cluster.layout import (
    BUSYBOX_IMAGE,
    KUBERNETES_SERVICE_IP,
    NODE_NETNS,
    SINK_IP,
    SINK_NETNS,
)


def run_pod(name: str, namespace: str, command: str, volumes: list[dict[str, Any]] | None = None) -> str:
    """A busybox pod that runs `command` to completion; returns its log (fails if it did not succeed)."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", command],
                "volumeMounts": [{"name": v["name"], "mountPath": "/data"} for v in volumes or []],
            }
        ],
        "volumes": volumes or [],
    }
    node.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    deadline = time.monotonic() + 120
    phase = ""
    while time.monotonic() < deadline:
        phase = node.kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}")
        if phase in {"Succeeded", "Failed"}:
            break
        time.sleep(1)
    log = node.kubectl("-n", namespace, "logs", name, check=False)
    assert phase == "Succeeded", f"{name}: {phase}\n{log}\n{node.kubectl('-n', namespace, 'describe', 'pod', name)}"
    return log


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True, timeout=30).stdout


def test_the_node_routes_only_into_the_sink_which_forwards_nothing(cluster: MemoryWatch) -> None:
    routes = _ip("-n", NODE_NETNS, "route", "show", "default")
    assert routes.split()[:3] == ["default", "via", SINK_IP]
    forwarding = subprocess.run(
        netns.command(["cat", "/proc/sys/net/ipv4/ip_forward"], SINK_NETNS), capture_output=True, text=True, check=True
    )
    assert forwarding.stdout.strip() == "0"
    links = [json.loads(_ip("-n", SINK_NETNS, "-j", "link", "show"))]
    assert sorted(link["ifname"] for link in links[0]) == ["lo", "sink0"]


def test_service_names_resolve_inside_pods(cluster: MemoryWatch) -> None:
    log = run_pod("dns", "default", "nslookup kubernetes.default.svc.cluster.local")
    assert KUBERNETES_SERVICE_IP in log
    node.kubectl("delete", "pod", "dns", "--wait=false")


def test_a_claim_is_bound_by_the_default_storage_class_and_written_by_a_pod(cluster: MemoryWatch) -> None:
    node.kubectl("create", "namespace", "storage-test")
    try:
        node.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": "storage-test"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
            }
        )
        volume = {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
        log = run_pod("writer", "storage-test", "echo written > /data/proof && cat /data/proof", [volume])
        assert log.strip() == "written"
        claim = json.loads(node.kubectl("-n", "storage-test", "get", "pvc", "data", "-o", "json"))
        assert claim["status"]["phase"] == "Bound"
        assert claim["spec"]["storageClassName"] == node.STORAGE_CLASS
    finally:
        node.kubectl("delete", "namespace", "storage-test", "--wait=false", check=False)  # finishes in the background


def test_up_after_a_crash_recovers(cluster: MemoryWatch) -> None:
    """Daemons killed without any cleanup (as by a crashed session): the next `up` cleans up and starts afresh."""
    for process in node.recorded():
        if process.name in {"kube-apiserver", "containerd", "kubelet"}:
            os.kill(process.pid, signal.SIGKILL)
    node.up()
    assert node.healthy()
    assert KUBERNETES_SERVICE_IP in run_pod("dns-again", "default", "nslookup kubernetes.default.svc.cluster.local")
    node.kubectl("delete", "pod", "dns-again", "--wait=false")
