"""`python -m tests.cluster build|up|down|status`: the test cluster for people (the tests use the same code).

    build   compile and cache everything the cluster and the image need (what .ci/run does on a fresh machine)
    up      a fresh single-node cluster (whatever a crashed run left is cleaned up first)
    down    stop every process it started, by PID, and remove its namespaces, mounts, cgroups and files
    status  which daemons run, whether the node is Ready, the cluster's resident memory

While it is up, `nsenter --net=/run/netns/airia-test-pod-node kubectl --kubeconfig
/var/lib/airia-test-pod-cluster/pki/admin.kubeconfig get pods -A` talks to it; a pytest session reuses it and
leaves it running.
"""

from __future__ import annotations

import argparse
import json
import sys

from tests.cluster import build, image, node


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["build", "up", "down", "status"])
    args = parser.parse_args(argv)
    if args.action == "build":
        build.everything()
        print(image.build().name)
    elif args.action == "up":
        node.up()
    elif args.action == "down":
        node.down()
    else:
        current = node.status()
        print(json.dumps(current, indent=2))
        return 0 if node.healthy() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
