"""Build what the cluster runs, once, into the cache: Kubernetes, CoreDNS, local-path-provisioner and the small
images the node needs (pause, busybox). Nothing is pulled from a registry; sources come from the Go module proxy
and Debian. A warm cache returns at once; a warm Go build cache only links.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.cluster.layout import (
    BUSYBOX_IMAGE,
    COREDNS_MODULE,
    COREDNS_VERSION,
    GO_VERSION_DIRECTIVE,
    KUBERNETES_BINARIES,
    KUBERNETES_VERSION,
    LOCAL_PATH_MODULE,
    LOCAL_PATH_VERSION,
    PAUSE_IMAGE,
    bin_dir,
    cache_dir,
    kubernetes_bin,
)

GO = shutil.which("go") or "/usr/local/go/bin/go"
NICE = ["nice", "-n", "19"]  # the machine is shared: builds yield to everything else
GO_PARALLELISM = os.environ.get("TESTPOD_CLUSTER_GO_P", "2")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PAUSE_SOURCE = r"""
/* The pod sandbox's process: sleep until told to stop, reap orphans. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction term = {0}, child = {0};
  term.sa_handler = stop; sigaction(SIGTERM, &term, 0); sigaction(SIGINT, &term, 0);
  child.sa_handler = reap; child.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &child, 0);
  for (;;) pause();
}
"""


def log(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


def _go_env() -> dict[str, str]:
    return {**os.environ, "CGO_ENABLED": "0", "PATH": f"{Path(GO).parent}:{os.environ['PATH']}"}


def _run(command: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


def _wrapper_module() -> Path:
    """A module that requires k8s.io/kubernetes and replaces each of its ./staging modules with the published one."""
    module = cache_dir() / "kubernetes-build" / KUBERNETES_VERSION
    if (module / "go.sum").exists():
        return module
    module.mkdir(parents=True, exist_ok=True)
    env = _go_env()
    info = json.loads(_run([GO, "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"], env=env))
    staging_version = "v0." + KUBERNETES_VERSION.removeprefix("v1.")
    replaced = [
        line.split()[0]
        for line in Path(info["GoMod"]).read_text().splitlines()
        if "=> ./staging/" in line and line.strip().startswith("k8s.io/")
    ]
    replaces = "\n".join(f"\t{name} => {name} {staging_version}" for name in replaced)
    (module / "go.mod").write_text(
        f"module airia-test-pod/kubernetes-build\n\ngo {GO_VERSION_DIRECTIVE}\n\ngodebug default=go1.24\n\n"
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}\n\nreplace (\n{replaces}\n)\n"
    )
    (module / "main.go").write_text("package main\n\nfunc main() {}\n")
    commands = [f"k8s.io/kubernetes/cmd/{name}@{KUBERNETES_VERSION}" for name in KUBERNETES_BINARIES]
    _run([GO, "get", *commands], cwd=module, env=env)
    return module


def _version_ldflags() -> str:
    minor = KUBERNETES_VERSION.split(".")[1]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={KUBERNETES_VERSION}",
            f"-X {package}.gitMajor=1",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return " ".join(flags)


def kubernetes() -> None:
    missing = [name for name in KUBERNETES_BINARIES if not kubernetes_bin(name).exists()]
    if not missing:
        return
    module = _wrapper_module()
    kubernetes_bin("x").parent.mkdir(parents=True, exist_ok=True)
    for name in missing:
        started = time.monotonic()
        target = kubernetes_bin(name)
        partial = target.with_suffix(".partial")
        _run(
            [
                *NICE,
                GO,
                "build",
                "-p",
                GO_PARALLELISM,
                "-ldflags",
                _version_ldflags(),
                "-o",
                str(partial),
                f"k8s.io/kubernetes/cmd/{name}",
            ],
            cwd=module,
            env=_go_env(),
        )
        partial.rename(target)
        log(f"built {name} {KUBERNETES_VERSION} in {time.monotonic() - started:.0f} s")


def go_install(module: str, version: str, binary: str) -> Path:
    """A plain `go install` (modules without replace directives), kept per version."""
    target = bin_dir() / f"{binary}-{version}"
    if target.exists():
        return target
    started = time.monotonic()
    bin_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bin_dir()) as gobin:
        _run(
            [*NICE, GO, "install", "-p", GO_PARALLELISM, "-ldflags", "-s -w", f"{module}@{version}"],
            env={**_go_env(), "GOBIN": gobin},
        )
        Path(gobin, binary).rename(target)
    log(f"built {binary} {version} in {time.monotonic() - started:.0f} s")
    return target


def coredns() -> Path:
    return go_install(COREDNS_MODULE, COREDNS_VERSION, "coredns")


def local_path_provisioner() -> Path:
    return go_install(LOCAL_PATH_MODULE, LOCAL_PATH_VERSION, "local-path-provisioner")


def oci_archive(
    rootfs: Path, name: str, out: Path, *, entrypoint: list[str] | None = None, cmd: list[str] | None = None
) -> Path:
    """A one-layer OCI image archive of `rootfs`, importable with `ctr images import`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        layer = Path(work, "layer.tar")
        # GNU tar keeps numeric owners, modes, links and device nodes as they are
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(layer), "."])
        digest = hashlib.sha256()
        with layer.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        layer_digest = digest.hexdigest()
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Entrypoint": entrypoint, "Cmd": cmd, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        }
        config_bytes = json.dumps(config).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{layer_digest}",
                    "size": layer.stat().st_size,
                }
            ],
        }
        manifest_bytes = json.dumps(manifest).encode()
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
                    "size": len(manifest_bytes),
                    "annotations": {"io.containerd.image.name": name},
                }
            ],
        }
        partial = out.with_suffix(".partial")
        with tarfile.open(partial, "w") as archive:
            for member, data in (
                ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                ("index.json", json.dumps(index).encode()),
                ("blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:"), config_bytes),  # type: ignore[index]
                ("blobs/sha256/" + index["manifests"][0]["digest"].removeprefix("sha256:"), manifest_bytes),  # type: ignore[index]
            ):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            archive.add(layer, f"blobs/sha256/{layer_digest}")
        partial.rename(out)
    return out


def _busybox_root(root: Path) -> Path:
    for directory in ("bin", "tmp", "etc", "proc", "sys", "dev"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in _run(["/bin/busybox", "--list"]).split():
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
    return root


def images() -> list[Path]:
    """Archives of the pause and busybox images (helper pods, test clients)."""
    directory = cache_dir() / "images"
    pause = directory / "pause.tar"
    busybox = directory / "busybox.tar"
    if not pause.exists():
        with tempfile.TemporaryDirectory() as work:
            root = Path(work, "root")
            root.mkdir()
            source = Path(work, "pause.c")
            source.write_text(PAUSE_SOURCE)
            _run([*NICE, "gcc", "-static", "-Os", "-s", "-o", str(root / "pause"), str(source)])
            oci_archive(root, PAUSE_IMAGE, pause, entrypoint=["/pause"])
    if not busybox.exists():
        with tempfile.TemporaryDirectory() as work:
            oci_archive(_busybox_root(Path(work, "root")), BUSYBOX_IMAGE, busybox, cmd=["sh"])
    return [pause, busybox]


def everything() -> list[Path]:
    """Every binary and image the cluster needs; returns the image archives to import."""
    kubernetes()
    coredns()
    local_path_provisioner()
    return images()
