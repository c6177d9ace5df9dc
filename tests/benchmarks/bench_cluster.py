"""Test-cluster figures: the build step as .ci/run runs it, a warm `up`, the resident memory, `down`.

    python -m tests.benchmarks.bench_cluster          # needs root; leaves no cluster behind

The build step is timed as it is (cold on a fresh machine, a check of the cache when warm); `up` and `down` are
timed on a cluster started here. Everything stays inside the cluster's own network namespaces. Prints figures,
asserts nothing.
"""

from __future__ import annotations

import time

from tests.cluster import build, image, node


def main() -> None:
    started = time.monotonic()
    build.everything()
    built = image.build()
    print(f"build (binaries, images, the product's image): {time.monotonic() - started:.0f} s")
    if built.seconds:
        print(f"  of which the image build from the Dockerfile: {built.seconds:.0f} s")
    started = time.monotonic()
    node.up()
    print(f"up (to a Ready node with DNS and storage): {time.monotonic() - started:.0f} s")
    node.import_image(built.archive)
    time.sleep(10)  # let the controllers settle
    print(f"resident memory of the idle cluster: {node.rss_bytes() / 1e6:.0f} MB")
    started = time.monotonic()
    node.down()
    print(f"down: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
