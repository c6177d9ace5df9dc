"""The cluster and storage kinds on the test cluster: how long a check takes, how long a claim takes to bind and
how fast the writer pod writes (with fsync) and reads back.

    python -m tests.cluster up && python -m tests.benchmarks.bench_kube_checks [write MiB, default 64]

Runs as the cluster's admin (kubeconfig), in the namespace `default`, inside the node's network namespace; the
product's image is built (or reused) and imported first, since the writer pod runs it. Prints figures, asserts
nothing.
"""

from __future__ import annotations

import statistics
import sys

from app.checks.cluster import ClusterTarget
from app.checks.storage import StorageTarget
from tests.checks import run_check
from tests.cluster import image, netns, node
from tests.cluster.layout import admin_kubeconfig

RUNS = 3


def main(write_mib: int) -> None:
    if not node.healthy():
        sys.exit("no test cluster: start it with `python -m tests.cluster up`")
    built = image.build()
    node.import_image(built.archive)
    cluster = ClusterTarget(name="k", kind="cluster", kubeconfig=admin_kubeconfig(), min_version="1.30")
    storage = StorageTarget(
        name="bench",
        kind="storage",
        kubeconfig=admin_kubeconfig(),
        image=built.name,
        size="1Gi",
        write_bytes=write_mib * 2**20,
    )
    with netns.inside_node():
        durations = [run_check(cluster).duration_ms for _ in range(RUNS * 3)]
        print(f"cluster check: median {statistics.median(durations):.0f} ms over {len(durations)} runs")
        for _ in range(RUNS):
            result = run_check(storage)
            facts = result.facts
            print(
                f"storage check ({write_mib} MiB): {result.status.value} in {result.duration_ms / 1000:.1f} s; "
                f"bind {facts.get('bind_ms')} ms, write {facts.get('write_mib_s')} MiB/s, "
                f"read {facts.get('read_mib_s')} MiB/s" + (f"; {result.cause}" if result.cause else "")
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 64)
