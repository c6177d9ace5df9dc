"""The session's cluster and the product's image in it.

Every test under tests/cluster/ is marked `cluster`. Without a cluster the tests fail; only a developer who says
so with TESTPOD_SKIP_CLUSTER=1 (never under CI=true) gets them skipped. A cluster already up (from `python -m
tests.cluster up`) is reused and left running; one the session started is torn down at its end, also on failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import image, netns, node, servers
from tests.cluster.layout import CLUSTER_DOMAIN, admin_kubeconfig
from tests.deploy.tools import find

CHART = Path(__file__).resolve().parents[2] / "helm" / "airia-test-pod"
CLUSTER_TIMEOUT = 900  # seconds per test, bringing the cluster up included


RESTARTS_THE_CLUSTER = "test_up_after_a_crash_recovers"  # runs last: every release and server before it is gone


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.timeout(CLUSTER_TIMEOUT))
    # the cluster tests run after every other test, so its daemons never load the machine under a timing test;
    # stable: every other test keeps its place
    items.sort(key=lambda item: (here in Path(str(item.fspath)).parents, item.name == RESTARTS_THE_CLUSTER))


def _unavailable(why: str) -> None:
    if os.environ.get("TESTPOD_SKIP_CLUSTER") == "1" and os.environ.get("CI") != "true":
        pytest.skip(f"no test cluster and TESTPOD_SKIP_CLUSTER=1: {why}")
    pytest.fail(f"the test cluster could not be brought up: {why}", pytrace=False)


@dataclass
class MemoryWatch:
    """Samples the cluster's resident memory every few seconds; `peak` is the largest sample."""

    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(2):
            self.peak = max(self.peak, node.rss_bytes())

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture(scope="session")
def cluster() -> Iterator[MemoryWatch]:
    if os.environ.get("TESTPOD_SKIP_CLUSTER") == "1" and os.environ.get("CI") != "true":
        pytest.skip("TESTPOD_SKIP_CLUSTER=1: the cluster tests are skipped on request")
    reused = node.healthy()
    if not reused:
        try:
            node.up()
        except Exception as error:  # any reason the cluster cannot run ends the same way
            _unavailable(str(error))
    watch = MemoryWatch()
    threading.Thread(target=watch.run, daemon=True).start()
    try:
        yield watch
    finally:
        watch.stop()
        print(f"\n[cluster] peak resident memory {watch.peak / 1e6:.0f} MB")
        if not reused:
            node.down()


@pytest.fixture(scope="session")
def app_image(cluster: MemoryWatch) -> image.BuiltImage:
    """The image built from the Dockerfile, imported into the cluster's containerd."""
    try:
        built = image.build()
    except (RuntimeError, OSError) as error:
        _unavailable(f"building the image failed: {error}")
    node.import_image(built.archive)
    return built


def helm(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = find("helm")
    if binary is None:
        _unavailable("helm is not installed (.ci/run installs it)")
    assert binary is not None
    result = subprocess.run(
        netns.command([binary, f"--kubeconfig={admin_kubeconfig()}", *args]),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@contextmanager
def port_forward(namespace: str, resource: str, port: int) -> Iterator[int]:
    """`kubectl port-forward` inside the node; yields the local port (reach it under `netns.inside_node()`)."""
    process = subprocess.Popen(
        netns.command(
            [
                str(node.kubernetes_bin("kubectl")),
                f"--kubeconfig={admin_kubeconfig()}",
                "-n",
                namespace,
                "port-forward",
                resource,
                f":{port}",
            ]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
            if found:
                yield int(found.group(1))
                return
            if process.poll() is not None:
                break
        raise AssertionError(f"kubectl port-forward did not start: {line}")
    finally:
        process.terminate()
        process.wait(10)


# ---------------------------------------------------------------- the releases the install tests share

NAMESPACE = "airia-readiness"  # the README's own names
RELEASE = "readiness"
FULLNAME = f"{RELEASE}-airia-test-pod"


STALL_TIMEOUT = 5.0  # seconds: the stalled target's own timeout, within which it must fail


@dataclass(frozen=True)
class Targets:
    postgres: servers.NodePostgres
    s3: servers.NodeS3
    http_url: str
    stalled_url: str  # accepts and never answers

    def values(self, built: image.BuiltImage, postgres_secret: str = "airia-postgres") -> dict[str, Any]:
        """my-values.yaml as the README writes it: targets with secretRefs to Secrets created beforehand."""
        return {
            "image": {"repository": built.repository, "tag": built.tag},
            "targets": [
                {
                    "name": "main-db",
                    "kind": "postgres",
                    "host": self.postgres.host,
                    "port": self.postgres.port,
                    "database": self.postgres.database,
                    "user": self.postgres.user,
                    "sslmode": "require",
                    "secretRefs": {"password": {"name": postgres_secret, "key": "password"}},
                },
                {
                    "name": "artifacts",
                    "kind": "s3",
                    "bucket": self.s3.bucket,
                    "endpoint_url": self.s3.endpoint,
                    "addressing_style": "path",
                    "access_key_id": self.s3.access_key_id,
                    "secretRefs": {"secret_access_key": {"name": "minio-credentials", "key": "secret-key"}},
                },
                {"name": "kube-api", "kind": "tcp", "host": f"kubernetes.default.svc.{CLUSTER_DOMAIN}", "port": 443},
                {"name": "cluster-dns", "kind": "dns", "host": f"kubernetes.default.svc.{CLUSTER_DOMAIN}"},
                {"name": "node-http", "kind": "http", "url": self.http_url},
                # a hung service the platform can live without: it fails on time and holds nothing up
                {
                    "name": "stalled-service",
                    "kind": "http",
                    "url": self.stalled_url,
                    "required": False,
                    "timeout": STALL_TIMEOUT,
                },
            ],
        }


def create_secret(namespace: str, name: str, data: dict[str, str]) -> None:
    """`kubectl create secret generic` as the README does it, or its replacement when it exists."""
    literals = [f"--from-literal={key}={value}" for key, value in data.items()]
    manifest = node.kubectl(
        "-n", namespace, "create", "secret", "generic", name, *literals, "--dry-run=client", "-o", "yaml"
    )
    node.kubectl("apply", "-f", "-", input=manifest)


@pytest.fixture(scope="session")
def targets(cluster: MemoryWatch) -> Iterator[Targets]:
    with (
        servers.postgres() as postgres,
        servers.s3() as s3,
        servers.http_server() as url,
        servers.stalled_server() as stalled,
    ):
        yield Targets(postgres, s3, url, stalled)


@pytest.fixture(scope="session")
def installed(app_image: image.BuiltImage, targets: Targets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The healthy release, installed with the README's commands and `--wait`; yields the Deployment's name."""
    node.kubectl("create", "namespace", NAMESPACE)
    create_secret(NAMESPACE, "airia-postgres", {"password": targets.postgres.password})
    create_secret(NAMESPACE, "minio-credentials", {"secret-key": targets.s3.secret_access_key})
    values = tmp_path_factory.mktemp("values") / "my-values.yaml"
    values.write_text(yaml.safe_dump(targets.values(app_image)))
    helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values), "--wait", "--timeout", "180s")
    yield FULLNAME
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
    node.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False)
