"""Bring the single-node cluster up, report its status, and tear it down by PID.

Every daemon runs inside the node's network namespace and is recorded as `RUN/pids/<name>` (its PID and the
binary it runs, so a recycled PID is never signalled). `down()` relies on those records and on what the
cluster leaves on the machine (its mounts under STATE and RUN, the pods' network namespaces under RUN, the pods'
cgroups under CGROUP_PARENT), never on process names, so it also cleans up after a crash; `up()` starts with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import build, netns, pki
from tests.cluster.layout import (
    APISERVER_PORT,
    BUSYBOX_IMAGE,
    CGROUP_PARENT,
    CLUSTER_DOMAIN,
    DNS_SERVICE_IP,
    KUBELET_FIXED_DIR,
    KUBERNETES_SERVICE_IP,
    NODE_IP,
    NODE_NAME,
    PAUSE_IMAGE,
    POD_CIDR,
    POD_GATEWAY,
    POD_LOG_LINKS,
    RUN,
    SERVICE_CIDR,
    STATE,
    admin_kubeconfig,
    kubernetes_bin,
)

CONTAINERD_SOCKET = RUN / "containerd" / "containerd.sock"
PIDS = RUN / "pids"
LOGS = STATE / "logs"
REGISTRY_HOSTS = STATE / "conf" / "certs.d"  # containerd's config_path for registries
CGROUP_ROOT = Path("/sys/fs/cgroup")
LOCAL_PATH_NAMESPACE = "local-path-storage"
STORAGE_CLASS = "local-path"


def log(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


# ---------------------------------------------------------------- processes, recorded by PID


@dataclass(frozen=True)
class Recorded:
    name: str
    pid: int
    binary: str

    def alive(self) -> bool:
        """Running, and still the process we started (not a recycled PID, not a zombie)."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{self.pid}/cmdline", "rb") as cmdline:
                argv0 = cmdline.read().split(b"\0", 1)[0].decode()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        return state != "Z" and argv0 == self.binary


def recorded() -> list[Recorded]:
    found = []
    for record in sorted(PIDS.glob("*")) if PIDS.exists() else []:
        pid, binary = record.read_text().split("\n", 1)
        found.append(Recorded(record.name, int(pid), binary.strip()))
    return found


def start(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Recorded:
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{name}.log").open("ab") as output:
        process = subprocess.Popen(
            netns.command(list(argv)),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal that started it reaches only `down`
            env=env,
        )
    (PIDS / name).write_text(f"{process.pid}\n{argv[0]}\n")
    started = Recorded(name, process.pid, argv[0])
    deadline = time.monotonic() + 10  # nsenter execs the daemon: until then the PID runs nsenter
    while not started.alive() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return started


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(process: Recorded, grace: float = 15.0) -> None:
    if process.alive():
        os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process.alive() and time.monotonic() < deadline:
            _reap(process.pid)
            time.sleep(0.1)
        if process.alive():
            os.kill(process.pid, signal.SIGKILL)
            while process.alive():
                _reap(process.pid)
                time.sleep(0.05)
    _reap(process.pid)
    (PIDS / process.name).unlink(missing_ok=True)


def wait_for(what: str, ready: Callable[[], bool], timeout: float, daemon: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if daemon and not any(p.alive() for p in recorded() if p.name == daemon):
            raise RuntimeError(f"{daemon} exited while waiting for {what}:\n{tail(daemon)}")
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready within {timeout:.0f} s" + (f":\n{tail(daemon)}" if daemon else ""))


def tail(name: str, lines: int = 30) -> str:
    path = LOGS / f"{name}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


# ---------------------------------------------------------------- clients


def kubectl(*args: str, input: str | None = None, timeout: float = 120, check: bool = True) -> str:
    """kubectl as the cluster's admin, inside the node namespace; returns stdout (raises with stderr on failure)."""
    result = subprocess.run(
        netns.command([str(kubernetes_bin("kubectl")), f"--kubeconfig={admin_kubeconfig()}", *args]),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def apply(*documents: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))


def ctr(*args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        ["ctr", "--address", str(CONTAINERD_SOCKET), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def import_image(archive: Path) -> None:
    ctr("images", "import", str(archive))


def remove_images(repository: str) -> None:
    """Forget what containerd pulled from `repository` (by tag and by digest); content nothing else uses goes too."""
    prefixes = (f"{repository}:", f"{repository}@")
    names = [name for name in ctr("images", "ls", "-q").split() if name.startswith(prefixes)]
    if names:
        ctr("images", "rm", "--sync", *names)


@contextlib.contextmanager
def trusted_registry(host: str, ca_file: Path) -> Iterator[Path]:
    """containerd trusts `ca_file` for https://host, as an operator sets up a private registry: hosts.toml in the
    CRI plugin's config_path, which containerd reads on every pull (no restart)."""
    hosts = REGISTRY_HOSTS / host / "hosts.toml"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(
        f'server = "https://{host}"\n\n[host."https://{host}"]\n  capabilities = ["pull", "resolve"]\n'
        f'  ca = "{ca_file}"\n'
    )
    try:
        yield hosts
    finally:
        shutil.rmtree(hosts.parent, ignore_errors=True)


# ---------------------------------------------------------------- configuration files


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _configs() -> dict[str, Path]:
    conf = STATE / "conf"
    pki_dir = admin_kubeconfig().parent
    containerd = f"""version = 2
root = "{STATE / "containerd"}"
state = "{RUN / "containerd"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{CONTAINERD_SOCKET}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root lacks CAP_SYS_RESOURCE here: the kubelet's -998 for sandboxes cannot be written; keep containerd's own
  restrict_oom_score_adj = true
  # pods' network namespaces live under RUN, so `down` finds every one of them
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  # a registry's CA and mirrors as users configure them: <host:port>/hosts.toml in this directory, read per pull
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{REGISTRY_HOSTS}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{conf / "cni"}"
    max_conf_num = 1
"""
    cni = {
        "cniVersion": "0.4.0",
        "name": "airia-test-pod",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(STATE / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki_dir / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_PARENT}",
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "tlsCertFile": str(pki_dir / "kubelet-server.crt"),
        "tlsPrivateKeyFile": str(pki_dir / "kubelet-server.key"),
        "failSwapOn": False,
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": str(_write(conf / "resolv.conf", f"nameserver {NODE_IP}\n")),
        "address": NODE_IP,
        "healthzBindAddress": "127.0.0.1",
        "readOnlyPort": 0,
        "podLogsDir": str(STATE / "pod-logs"),
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "maxPods": 30,
        "volumePluginDir": str(STATE / "volume-plugins"),
        "syncFrequency": "10s",  # Secret and ConfigMap volumes follow their objects within seconds
    }
    kube_proxy = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(pki_dir / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
    }
    corefile = f""".:53 {{
    bind {NODE_IP}
    errors
    ready 127.0.0.1:8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {admin_kubeconfig()}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""
    return {
        "containerd": _write(conf / "containerd.toml", containerd),
        "cni": _write(conf / "cni" / "10-airia-test-pod.conflist", json.dumps(cni, indent=2)),
        "kubelet": _write(conf / "kubelet.yaml", yaml.safe_dump(kubelet)),
        "kube-proxy": _write(conf / "kube-proxy.yaml", yaml.safe_dump(kube_proxy)),
        "coredns": _write(conf / "Corefile", corefile),
    }


# ---------------------------------------------------------------- up


def _etcd() -> None:
    start(
        "etcd",
        [
            shutil.which("etcd") or "/usr/bin/etcd",
            "--name=airia-test-pod",
            f"--data-dir={STATE / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=airia-test-pod=http://127.0.0.1:2380",
            "--unsafe-no-fsync",  # a throw-away store: durability buys nothing and costs I/O
        ],
    )

    def healthy() -> bool:
        result = subprocess.run(
            netns.command(["etcdctl", "--endpoints=http://127.0.0.1:2379", "endpoint", "health"]),
            capture_output=True,
            env={**os.environ, "ETCDCTL_API": "3"},
            timeout=30,
            check=False,
        )
        return result.returncode == 0

    wait_for("etcd", healthy, 60, "etcd")


def _containerd(config: Path, images: list[Path]) -> None:
    start("containerd", [shutil.which("containerd") or "/usr/bin/containerd", f"--config={config}"])

    def serving() -> bool:
        try:
            ctr("version", timeout=10)
        except RuntimeError:
            return False
        return True

    wait_for("containerd", serving, 60, "containerd")
    for archive in images:
        import_image(archive)


def _control_plane() -> None:
    pki_dir = admin_kubeconfig().parent
    start(
        "kube-apiserver",
        [
            str(kubernetes_bin("kube-apiserver")),
            f"--advertise-address={NODE_IP}",
            "--bind-address=0.0.0.0",
            f"--secure-port={APISERVER_PORT}",
            "--etcd-servers=http://127.0.0.1:2379",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--client-ca-file={pki_dir / 'ca.crt'}",
            f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
            f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
            f"--kubelet-client-certificate={pki_dir / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki_dir / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki_dir / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={pki_dir / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'service-account.key'}",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
        ],
    )
    wait_for(
        "kube-apiserver",
        lambda: kubectl("get", "--raw=/readyz", check=False, timeout=10) == "ok",
        180,
        "kube-apiserver",
    )
    kubeconfig = pki_dir / "controller-manager.kubeconfig"
    start(
        "kube-controller-manager",
        [
            str(kubernetes_bin("kube-controller-manager")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={pki_dir / 'service-account.key'}",
            f"--root-ca-file={pki_dir / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
            f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allocate-node-cidrs=false",
            "--profiling=false",
        ],
    )
    kubeconfig = pki_dir / "scheduler.kubeconfig"
    start(
        "kube-scheduler",
        [
            str(kubernetes_bin("kube-scheduler")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--profiling=false",
        ],
    )


def _node(configs: dict[str, Path]) -> None:
    pki_dir = admin_kubeconfig().parent
    start(
        "kubelet",
        [
            str(kubernetes_bin("kubelet")),
            f"--config={configs['kubelet']}",
            f"--kubeconfig={pki_dir / 'kubelet.kubeconfig'}",
            f"--node-ip={NODE_IP}",
            f"--hostname-override={NODE_NAME}",
            f"--root-dir={STATE / 'kubelet'}",
            "--v=1",
        ],
    )
    start("kube-proxy", [str(kubernetes_bin("kube-proxy")), f"--config={configs['kube-proxy']}"])

    def node_ready() -> bool:
        out = kubectl(
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
            timeout=10,
        )
        return out == "True"

    wait_for(f"node {NODE_NAME}", node_ready, 180, "kubelet")
    wait_for(
        "the default service account",
        lambda: bool(kubectl("get", "serviceaccount", "default", "-o", "name", check=False, timeout=10)),
        120,
    )


def _dns(corefile: Path) -> None:
    """CoreDNS on the node, behind the kube-dns Service the kubelet gives every pod as its resolver."""
    start("coredns", [str(build.coredns()), f"-conf={corefile}"])
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "clusterIP": DNS_SERVICE_IP,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        },
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-node",
            "namespace": "kube-system",
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "airia-test-pod",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
    }
    apply(service, endpoints)

    def answering() -> bool:
        result = subprocess.run(
            # through the Service's address: CoreDNS answers and kube-proxy routes to it, as it does for pods
            netns.command(["busybox", "nslookup", f"kubernetes.default.svc.{CLUSTER_DOMAIN}", DNS_SERVICE_IP]),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return KUBERNETES_SERVICE_IP in result.stdout

    wait_for("CoreDNS", answering, 60, "coredns")


def _storage() -> None:
    """local-path-provisioner on the node: a default StorageClass whose volumes are directories under STATE."""
    config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(STATE / "volumes")]}]}
    helper = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {"containers": [{"name": "helper-pod", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never"}]},
    }
    apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LOCAL_PATH_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-path-config", "namespace": LOCAL_PATH_NAMESPACE},
            "data": {
                "config.json": json.dumps(config),
                "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                "helperPod.yaml": yaml.safe_dump(helper),
            },
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    )
    start(
        "local-path-provisioner",
        [
            str(build.local_path_provisioner()),
            "start",
            f"--kubeconfig={admin_kubeconfig()}",
            f"--namespace={LOCAL_PATH_NAMESPACE}",
            "--configmap-name=local-path-config",
            "--provisioner-name=rancher.io/local-path",
            f"--helper-image={BUSYBOX_IMAGE}",
            "--service-account-name=default",
        ],
    )


def up() -> None:
    """A fresh cluster, whatever was left before; raises (after cleaning up) if any part does not come up."""
    started = time.monotonic()
    images = build.everything()
    log(f"binaries and images ready after {time.monotonic() - started:.0f} s")
    down()
    try:
        STATE.mkdir(parents=True, exist_ok=True)
        pki.create(admin_kubeconfig().parent)
        configs = _configs()
        netns.create()
        _create_cgroups()
        _etcd()
        _containerd(configs["containerd"], images)
        _control_plane()
        _node(configs)
        _dns(configs["coredns"])
        _storage()
    except BaseException:
        log("bringing the cluster up failed; cleaning up")
        down()
        raise
    log(f"cluster up in {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------- status


def status() -> dict[str, Any]:
    daemons = {p.name: ("running" if p.alive() else "dead") for p in recorded()}
    ready = False
    if daemons.get("kube-apiserver") == "running":
        out = kubectl(
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
            timeout=10,
        )
        ready = out == "True"
    return {"daemons": daemons, "node_ready": ready, "rss_mb": round(rss_bytes() / 1e6)}


def healthy() -> bool:
    current = status()
    return bool(current["daemons"]) and current["node_ready"] and set(current["daemons"].values()) == {"running"}


def _cgroup_dirs() -> list[Path]:
    return [d for d in CGROUP_ROOT.glob(f"*/{CGROUP_PARENT}") if d.is_dir()]


def rss_bytes() -> int:
    """Resident memory of the cluster now: its daemons, the containerd shims and every pod."""
    total = 0
    pids = {p.pid for p in recorded() if p.alive()} | set(_shim_pids())
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (FileNotFoundError, ProcessLookupError):
            continue
    # the pods' anonymous memory (their page cache is left out, as it is for the daemons' RSS above)
    stat = CGROUP_ROOT / "memory" / CGROUP_PARENT / "memory.stat"
    if stat.exists():
        figures = dict(line.split() for line in stat.read_text().splitlines())
        total += int(figures.get("total_rss", 0))
    return total


# ---------------------------------------------------------------- down


def _shim_pids() -> list[int]:
    """containerd's shims for our pods: they name our state directory on their command line."""
    found = []
    marker = str(CONTAINERD_SOCKET).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if b"containerd-shim" in cmdline.split(b"\0", 1)[0] and marker in cmdline:
            found.append(int(entry.name))
    return found


def _kill_cgroup_tasks() -> None:
    """Every process of every pod: they sit in cgroups below CGROUP_PARENT."""
    for _ in range(50):
        pids = set()
        for directory in _cgroup_dirs():
            for procs in directory.rglob("cgroup.procs"):
                pids |= {int(pid) for pid in procs.read_text().split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _create_cgroups() -> None:
    """The kubelet's cgroupRoot must exist in every hierarchy; a new cpuset starts empty, so it gets the root's."""
    for hierarchy in CGROUP_ROOT.iterdir():
        if hierarchy.name == "unified" or not (hierarchy / "cgroup.procs").exists():
            continue
        directory = hierarchy / CGROUP_PARENT
        directory.mkdir(exist_ok=True)
        for inherited in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / inherited).exists():
                (directory / inherited).write_text((hierarchy / inherited).read_text())


def _remove_cgroups() -> None:
    for directory in _cgroup_dirs():
        for sub in sorted((d for d in directory.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
            sub.rmdir()
        directory.rmdir()


def _mounts_below(*roots: Path) -> list[str]:
    prefixes = tuple(str(root) + "/" for root in roots)
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefixes) or point in {str(r) for r in roots}:
                points.append(point)
    return sorted(set(points), key=lambda p: -len(p))


def down() -> None:
    """Stop everything the cluster started and remove what it left; safe to call at any time."""
    for process in reversed(recorded()):
        if process.name != "containerd":
            stop(process)
    _kill_cgroup_tasks()
    for shim in _shim_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(shim, signal.SIGKILL)
    for process in recorded():
        stop(process)
    _remove_cgroups()
    for _ in range(3):
        for point in _mounts_below(STATE, RUN):
            subprocess.run(["umount", "--lazy", point], check=False, capture_output=True, timeout=30)
        if not _mounts_below(STATE, RUN):
            break
    netns.delete()
    shutil.rmtree(RUN, ignore_errors=True)
    shutil.rmtree(STATE, ignore_errors=True)
    # the kubelet's device-plugin socket has a fixed path; the directories go only when nothing else is in them
    (KUBELET_FIXED_DIR / "device-plugins" / "kubelet.sock").unlink(missing_ok=True)
    for directory in (KUBELET_FIXED_DIR / "device-plugins", KUBELET_FIXED_DIR):
        with contextlib.suppress(OSError):
            directory.rmdir()
    # the kubelet links every container's log here whatever its config says; ours point into STATE
    if POD_LOG_LINKS.is_dir():
        for link in POD_LOG_LINKS.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(str(STATE)):
                link.unlink()
