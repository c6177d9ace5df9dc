"""The chart installed from a private registry, as an air-gapped cluster gets it: image.repository names the
mirror, image.pullSecrets a kubernetes.io/dockerconfigjson Secret, and containerd trusts the mirror's CA through
its hosts.toml. The registry (TLS, htpasswd) runs in the node's namespace; the image is pushed to a repository
the cluster never imported, so a running pod proves a pull.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import image, node, servers
from tests.cluster.conftest import CHART, helm
from tests.cluster.release import auth_password, pod, run_through_the_api, statuses

NAMESPACE = "airia-mirror"
MIRROR_REPOSITORY = "mirror/airia-test-pod"  # never imported into containerd: only a pull puts it there
PULL_SECRET = "mirror-pull"
WRONG_PULL_SECRET = "mirror-pull-wrong-password"
CA_CONFIGMAP = "mirror-ca"
RELEASE, REFUSED_RELEASE = "mirrored", "refused"
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")


@dataclass(frozen=True)
class Mirror:
    registry: servers.NodeRegistry
    repository: str  # host:port/mirror/airia-test-pod, as image.repository names it
    tag: str
    digest: str  # the manifest's digest, as the registry has it
    size: int  # bytes pushed: the config and the compressed layers


@pytest.fixture(scope="module")
def mirror(app_image: image.BuiltImage) -> Iterator[Mirror]:
    with servers.registry() as registry, node.trusted_registry(registry.host, registry.ca_file):
        repository = f"{registry.host}/{MIRROR_REPOSITORY}"
        node.remove_images(repository)  # a reused cluster may still hold an earlier session's pull
        started = time.monotonic()
        digest = image.push(app_image, f"{repository}:{app_image.tag}", registry.ca_file, registry.docker_config())
        size = registry.stored_size(MIRROR_REPOSITORY, app_image.tag)
        pushed = Mirror(registry, repository, app_image.tag, digest, size)
        print(f"\n[cluster] pushed {pushed.size / 1e6:.0f} MB to the mirror in {time.monotonic() - started:.1f} s")
        node.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        try:
            registry.pull_secret(NAMESPACE, PULL_SECRET)
            registry.pull_secret(NAMESPACE, WRONG_PULL_SECRET, password="not-the-password")
            node.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": CA_CONFIGMAP, "namespace": NAMESPACE},
                    "data": {"ca.crt": registry.ca_file.read_text()},
                }
            )
            yield pushed
        finally:
            helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
            helm("uninstall", REFUSED_RELEASE, "--namespace", NAMESPACE, "--no-hooks", check=False)
            node.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False)
            node.remove_images(repository)


def values(mirror: Mirror, pull_secret: str, pull_policy: str = "IfNotPresent") -> dict[str, Any]:
    """The image from the mirror through the pull Secret; one target: the mirror itself, with the same Secret."""
    return {
        "image": {
            "repository": mirror.repository,
            "tag": mirror.tag,
            "pullPolicy": pull_policy,
            "pullSecrets": [{"name": pull_secret}],
        },
        "caBundle": {"configMap": CA_CONFIGMAP, "key": "ca.crt"},
        "registryCredentials": {"secret": pull_secret},
        "targets": [
            {
                "name": "mirror",
                "kind": "registry",
                "url": f"https://{mirror.registry.host}",
                "images": [f"{MIRROR_REPOSITORY}:{mirror.tag}"],
                "docker_config": "/etc/airia-test-pod/registry/.dockerconfigjson",
            }
        ],
    }


def events(reason: str) -> list[dict[str, Any]]:
    listed = node.kubectl("-n", NAMESPACE, "get", "events", "--field-selector", f"reason={reason}", "-o", "json")
    return list(json.loads(listed)["items"])


def waiting_reasons(release: str) -> dict[str, str]:
    """Why each container of the release's pods waits (e.g. ErrImagePull), by pod name."""
    listed = node.kubectl("-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/instance={release}", "-o", "json")
    return {
        item["metadata"]["name"]: status["state"]["waiting"].get("reason", "")
        for item in json.loads(listed)["items"]
        for status in item["status"].get("containerStatuses", [])
        if "waiting" in status["state"]
    }


def test_a_wrong_pull_password_stops_the_pod_at_the_pull_with_the_registrys_401(mirror: Mirror, tmp_path: Path) -> None:
    file = tmp_path / "wrong-password.yaml"
    # Always: the kubelet asks the registry even if an earlier test left the image on the node
    file.write_text(yaml.safe_dump(values(mirror, WRONG_PULL_SECRET, pull_policy="Always")))
    install = ("install", REFUSED_RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(file), "--timeout", "30s")
    with ThreadPoolExecutor(1) as pool:
        # the release's first pod (the pre-install validation) cannot start, so helm gives up at its timeout
        installing = pool.submit(helm, *install, check=False)
        reasons: dict[str, str] = {}
        deadline = time.monotonic() + 25
        while not set(reasons.values()) & set(PULL_FAILURES) and time.monotonic() < deadline:
            time.sleep(1)
            reasons = waiting_reasons(REFUSED_RELEASE)
        result = installing.result()
    assert set(reasons.values()) & set(PULL_FAILURES), reasons
    assert result.returncode != 0 and "pre-install" in result.stderr, result.stderr
    failed = [e["message"] for e in events("Failed") if f"{mirror.repository}:{mirror.tag}" in e["message"]]
    assert failed and all("401 Unauthorized" in message for message in failed), failed
    assert "not-the-password" not in json.dumps(failed) + result.stdout + result.stderr
    assert not [e for e in events("Pulled") if mirror.repository in e["message"]]
    # without its hooks: the pre-delete cleanup pod would wait for the same image until its deadline
    helm("uninstall", REFUSED_RELEASE, "--namespace", NAMESPACE, "--no-hooks")


def test_the_chart_installs_from_the_private_registry_through_its_pull_secret(mirror: Mirror, tmp_path: Path) -> None:
    file = tmp_path / "mirror.yaml"
    file.write_text(yaml.safe_dump(values(mirror, PULL_SECRET)))
    started = time.monotonic()
    helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(file), "--wait", "--timeout", "180s")
    installed = time.monotonic() - started
    try:
        server = pod(RELEASE, NAMESPACE)
        (container,) = server["status"]["containerStatuses"]
        assert container["image"] == f"{mirror.repository}:{mirror.tag}"
        assert container["imageID"] == f"{mirror.repository}@{mirror.digest}"  # the digest the registry gave
        # containerd's own record of the image under the mirror's name: the pushed manifest
        records = dict(line.split()[:3:2] for line in node.ctr("images", "ls").splitlines()[1:])
        assert records[f"{mirror.repository}:{mirror.tag}"] == mirror.digest

        # the registry served the manifest and signed the puller in with the Secret's user
        pulls = mirror.registry.pulls()
        requests = [e for e in pulls if e["http.request.uri"] == f"/v2/{MIRROR_REPOSITORY}/manifests/{mirror.tag}"]
        assert requests and {entry.get("auth.user.name") for entry in requests} == {mirror.registry.user}

        (pulled,) = [e["message"] for e in events("Pulled") if "Successfully pulled" in e["message"]]
        figures = re.search(r" in ([\d.]+m?s) .*Image size: (\d+) bytes", pulled)
        assert figures, pulled
        blobs = [entry for entry in pulls if "/blobs/" in entry["http.request.uri"]]
        # containerd skips the layers it already has unpacked (the imported image's): bench_registry_pull times a
        # cold pull
        print(
            f"\n[cluster] the kubelet pulled from the mirror in {figures[1]} ({len(blobs)} blobs fetched, image size "
            f"{int(figures[2]) / 1e6:.0f} MB); helm install --wait took {installed:.0f} s"
        )

        fullname = f"{RELEASE}-airia-test-pod"
        run = run_through_the_api(fullname, auth_password(f"{fullname}-auth", NAMESPACE), NAMESPACE)
        assert run["verdict"] == "ready", statuses(run)
        assert statuses(run) == {"mirror": ("passed", None)}
        (facts,) = [r["facts"] for r in run["results"]]
        assert facts[f"digest {MIRROR_REPOSITORY}:{mirror.tag}"] == mirror.digest
        assert facts["registry_auth"] == "basic"
        result = helm("test", RELEASE, "--namespace", NAMESPACE, "--logs")
        assert re.search(r"Phase:\s+Succeeded", result.stdout), result.stdout
        assert mirror.registry.password not in result.stdout
    finally:
        helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
