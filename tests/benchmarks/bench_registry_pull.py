"""The product's image through a private registry on the test cluster: push, and a cold pull by the kubelet.

    python -m tests.benchmarks.bench_registry_pull    # needs root; starts a fresh cluster and leaves none behind

The registry (TLS with a CA made here, htpasswd) runs in the node's namespace, as in
tests/cluster/test_private_registry.py. The cluster is fresh, so containerd holds none of the image's layers and
the pull fetches every one of them (the tests' pull, on a node that already has the imported image's layers
unpacked, fetches only the manifest and config). Prints figures, asserts nothing.
"""

from __future__ import annotations

import json
import re
import time

from tests.cluster import image, node, servers

NAMESPACE = "bench-mirror"
REPOSITORY = "mirror/airia-test-pod"


def main() -> None:
    built = image.build()
    node.up()
    try:
        with servers.registry() as registry, node.trusted_registry(registry.host, registry.ca_file):
            reference = f"{registry.host}/{REPOSITORY}:{built.tag}"
            started = time.monotonic()
            image.push(built, reference, registry.ca_file, registry.docker_config())
            pushed = time.monotonic() - started
            print(f"push to the registry: {pushed:.1f} s, {registry.stored_size(REPOSITORY, built.tag) / 1e6:.0f} MB")
            node.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            registry.pull_secret(NAMESPACE, "mirror-pull")
            started = time.monotonic()
            node.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "pulled", "namespace": NAMESPACE},
                    "spec": {
                        "imagePullSecrets": [{"name": "mirror-pull"}],
                        "restartPolicy": "Never",
                        "containers": [{"name": "app", "image": reference, "command": ["python", "-c", "pass"]}],
                    },
                }
            )
            message = ""
            while not message and time.monotonic() - started < 600:
                time.sleep(0.5)
                listed = json.loads(
                    node.kubectl("-n", NAMESPACE, "get", "events", "--field-selector", "reason=Pulled", "-o", "json")
                )
                message = next((e["message"] for e in listed["items"] if "Successfully pulled" in e["message"]), "")
            waited = time.monotonic() - started
            figures = re.search(r" in ([\d.]+m?s) .*Image size: (\d+) bytes", message)
            blobs = [entry for entry in registry.pulls() if "/blobs/" in entry["http.request.uri"]]
            if figures:
                print(
                    f"cold pull by the kubelet: {figures[1]} (image size {int(figures[2]) / 1e6:.0f} MB as the kubelet "
                    f"reports it, {len(blobs)} blobs fetched); Pod created to Pulled event: {waited:.1f} s"
                )
            else:
                print(f"no pull within {waited:.0f} s: {message or 'no Pulled event'}")
    finally:
        node.down()


if __name__ == "__main__":
    main()
