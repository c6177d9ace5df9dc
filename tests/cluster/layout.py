"""Every version, name, address and path of the test cluster: the one place they are written.

The cluster exists only inside two network namespaces the harness creates: NODE_NETNS holds the node (every
daemon, kubectl, helm, the pods' bridge and the servers pods reach) and SINK_NETNS is where the node's default
route leads: it forwards nothing, so no packet from the cluster reaches the machine's real network. The
addresses below exist only inside those namespaces.
"""

from __future__ import annotations

import os
from pathlib import Path

# Versions. Kubernetes is built from the Go module proxy through a wrapper module (its own go.mod replaces
# ./staging modules, so it cannot be `go install`ed); the staging modules are published as v0.<minor>.<patch>.
KUBERNETES_VERSION = "v1.34.4"
KUBERNETES_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
GO_VERSION_DIRECTIVE = "1.24.0"  # the wrapper module's `go` line, as Kubernetes 1.34's own go.mod has it
COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS_VERSION = "v1.12.4"
LOCAL_PATH_MODULE = "github.com/rancher/local-path-provisioner"
LOCAL_PATH_VERSION = "v0.0.30"
DEBIAN_RELEASE = "bookworm"  # the release the pinned python:3.11.x-slim-bookworm base image is built on
# Network: node, sink, pods, services
NODE_NETNS = "airia-test-pod-node"
SINK_NETNS = "airia-test-pod-sink"
NODE_IP = "10.200.0.10"
SINK_IP = "10.200.0.1"
NODE_PREFIX = 24
POD_CIDR = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/12"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
NODE_NAME = "airia-node"
APISERVER_PORT = 6443
REGISTRY_PORT = 5443  # a private registry on NODE_IP: containerd (in the node) pulls from it, pods reach it

# Images the cluster runs besides the app (built here: nothing can be pulled)
PAUSE_IMAGE = "airia-test-pod.local/pause:1.0"
BUSYBOX_IMAGE = "airia-test-pod.local/busybox:1.0"
APP_IMAGE_REPOSITORY = "airia-test-pod.local/airia-test-pod"


def cache_dir() -> Path:
    """What survives between runs (Go builds, debootstrapped roots, image archives): the CI cache directory."""
    base = os.environ.get("CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "airia-test-pod"
    )
    return Path(base) / "cluster"


# What one cluster leaves on the machine while it runs; `down` removes all of it.
STATE = Path(os.environ.get("TESTPOD_CLUSTER_STATE") or "/var/lib/airia-test-pod-cluster")
RUN = Path("/run/airia-test-pod-cluster")  # sockets and PID files
CGROUP_PARENT = "airia-test-pod"  # the kubelet's cgroupRoot: every pod's cgroup sits below it
POD_LOG_LINKS = Path("/var/log/containers")  # the kubelet always links container logs here
KUBELET_FIXED_DIR = Path("/var/lib/kubelet")  # and keeps its device-plugin socket here, whatever its root-dir


def bin_dir() -> Path:
    return cache_dir() / "bin"


def kubernetes_bin(name: str) -> Path:
    return bin_dir() / KUBERNETES_VERSION / name


def pki_dir() -> Path:
    return STATE / "pki"


def admin_kubeconfig() -> Path:
    return pki_dir() / "admin.kubeconfig"
