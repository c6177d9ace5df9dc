"""The product's image, built from the real Dockerfile with buildah, and imported into the cluster's containerd.

The pinned base image cannot be pulled here. A stand-in is made from a debootstrapped Debian of the same release
with Debian's Python 3.11, laid out where the official image has it (`/usr/local/bin/python`), and stored under
the pinned name, so `FROM` resolves locally (`--pull=never`). It differs from the official image in Python's
patch release. The build runs with chroot isolation and vfs storage kept in the cache.

A custom CA bundle and package index reach the build only as a build secret and a build argument of the builder
stage: `TESTPOD_BUILD_CA` (default: the host's bundle, which trusts this machine's TLS-re-signing proxy) and
`TESTPOD_PIP_INDEX_URL`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import netns
from tests.cluster.layout import APP_IMAGE_REPOSITORY, DEBIAN_RELEASE, RUN, cache_dir
from tests.deploy.dockercontext import list_context
from tests.deploy.dockerfile import DOCKERFILE, stages

ROOT = DOCKERFILE.parent
STORAGE = ["--root", str(cache_dir() / "buildah" / "storage"), "--runroot", str(RUN.parent / "airia-test-pod-buildah")]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
OFFICIAL_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(message: str) -> None:
    print(f"[image] {message}", flush=True)


def buildah(*args: str, timeout: float = 1800, inside_node: bool = False) -> str:
    argv = ["buildah", *STORAGE, "--storage-driver=vfs", *args]
    result = subprocess.run(
        netns.command(argv) if inside_node else argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "BUILDAH_ISOLATION": "chroot"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args[:3])} failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result.stdout.strip()


def pinned_base() -> str:
    """The Dockerfile's first FROM, as a fully qualified name (e.g. docker.io/library/python:3.11.14-slim-bookworm)."""
    base = stages(DOCKERFILE.read_text())[0].base
    if "/" not in base.split(":")[0]:
        base = f"docker.io/library/{base}"
    return base


def _exists(name: str) -> bool:
    try:
        buildah("inspect", "--type", "image", name)
    except RuntimeError:
        return False
    return True


def _debootstrap() -> Path:
    root = cache_dir() / "rootfs" / "bookworm-python"
    if (root / "usr" / "bin" / "python3.11").exists():
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = subprocess.run(
        [
            "nice",
            "-n",
            "19",
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates,netbase",
            DEBIAN_RELEASE,
            str(partial),
            "http://deb.debian.org/debian",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    partial.rename(root)
    log(f"debootstrapped {DEBIAN_RELEASE} in {time.monotonic() - started:.0f} s")
    return root


def base_image() -> str:
    """The stand-in for the pinned base image, in buildah's local storage under the pinned name."""
    name = pinned_base()
    if _exists(name):
        return name
    rootfs = _debootstrap()
    container = buildah("from", "scratch")
    try:
        mount = Path(buildah("mount", container))
        subprocess.run(
            f"tar -C {rootfs} --numeric-owner --exclude=./var/cache/apt/archives/*.deb "
            f"--exclude=./var/lib/apt/lists/* -cf - . | tar -C {mount} --numeric-owner -xf -",
            shell=True,
            check=True,
            timeout=600,
        )
        # where the official image has its interpreter
        for link in ("python", "python3", "python3.11"):
            (mount / "usr" / "local" / "bin" / link).symlink_to("/usr/bin/python3.11")
        buildah("config", "--env", f"PATH={OFFICIAL_PATH}", "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
        buildah("commit", "--rm", container, name)
    except BaseException:
        subprocess.run(["buildah", *STORAGE, "--storage-driver=vfs", "rm", container], check=False, capture_output=True)
        raise
    log(f"stand-in base image {name} committed")
    return name


def context_digest() -> str:
    """A digest of what the build reads: the Dockerfile and the context as .dockerignore lets it in."""
    digest = hashlib.sha256(DOCKERFILE.read_bytes())
    for relative in sorted(list_context(ROOT)):
        digest.update(relative.encode() + b"\0" + (ROOT / relative).read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class BuiltImage:
    name: str  # repository:tag, as the chart's image.repository + image.tag name it
    repository: str
    tag: str
    archive: Path  # docker-archive for `ctr images import`
    seconds: float  # build time (0 when reused)


def build(tag_suffix: str = "", build_args: dict[str, str] | None = None) -> BuiltImage:
    """Build the Dockerfile as it is (or reuse the build of the same context) and export it as an archive."""
    base_image()
    tag = f"{context_digest()}{tag_suffix}"
    name = f"{APP_IMAGE_REPOSITORY}:{tag}"
    archive = cache_dir() / "images" / f"app-{tag}.tar"
    seconds = 0.0
    if not _exists(name):
        started = time.monotonic()
        arguments = ["bud", "--pull=never", "--isolation=chroot", "--layers", "-f", str(DOCKERFILE), "-t", name]
        ca = Path(os.environ.get("TESTPOD_BUILD_CA") or HOST_CA)
        if ca.is_file():
            arguments += ["--secret", f"id=build-ca,src={ca}"]
        if os.environ.get("TESTPOD_PIP_INDEX_URL"):
            arguments += ["--build-arg", f"PIP_INDEX_URL={os.environ['TESTPOD_PIP_INDEX_URL']}"]
        for key, value in (build_args or {}).items():
            arguments += ["--build-arg", f"{key}={value}"]
        buildah(*arguments, str(ROOT))
        seconds = time.monotonic() - started
        log(f"built {name} in {seconds:.0f} s")
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=archive.parent) as work:
            partial = Path(work, "image.tar")
            buildah("push", name, f"docker-archive:{partial}:{name}")
            partial.rename(archive)
    _prune(tag)
    return BuiltImage(name, APP_IMAGE_REPOSITORY, tag, archive, seconds)


def _prune(current: str) -> None:
    """Drop the builds of earlier contexts, so the cache holds one app image (and its derived ones)."""
    for old in (cache_dir() / "images").glob("app-*.tar"):
        if not old.name.startswith(f"app-{current}"):
            old.unlink()
    listed = buildah("images", "--format", "{{.Name}}:{{.Tag}}", "--filter", f"reference={APP_IMAGE_REPOSITORY}")
    stale = [name for name in listed.split() if not name.split(":")[-1].startswith(current)]
    if stale:
        buildah("rmi", *stale)


def files(name: str) -> dict[str, os.stat_result]:
    """Every path in the image (relative to /), with its lstat."""
    container = buildah("from", "--pull=never", name)
    try:
        mount = Path(buildah("mount", container))
        found = {}
        for directory, subdirectories, names in os.walk(mount):
            for entry in subdirectories + names:
                path = Path(directory, entry)
                found["/" + str(path.relative_to(mount))] = path.lstat()
        return found
    finally:
        buildah("rm", container)


def inspect(name: str) -> str:
    return buildah("inspect", "--type", "image", name)


def derived(built: BuiltImage, suffix: str, entrypoint: list[str]) -> BuiltImage:
    """The built image with another entrypoint, e.g. a server that crashes: a bad release for the gate to catch."""
    tag = f"{built.tag}-{suffix}-{hashlib.sha256(json.dumps(entrypoint).encode()).hexdigest()[:8]}"
    name = f"{built.repository}:{tag}"
    archive = cache_dir() / "images" / f"app-{tag}.tar"
    if not _exists(name):
        container = buildah("from", "--pull=never", built.name)
        try:
            buildah("config", "--entrypoint", json.dumps(entrypoint), container)
            buildah("commit", container, name)
        finally:
            buildah("rm", container)
    if not archive.exists():
        with tempfile.TemporaryDirectory(dir=archive.parent) as work:
            partial = Path(work, "image.tar")
            buildah("push", name, f"docker-archive:{partial}:{name}")
            partial.rename(archive)
    return BuiltImage(name, built.repository, tag, archive, 0.0)


def push(built: BuiltImage, destination: str, ca_file: Path, docker_config: str) -> str:
    """Push the image to a registry in the node's namespace (`host:port/repository:tag`), trusting `ca_file` and
    signing in with the `.dockerconfigjson` text, as a release is mirrored; returns the manifest's digest."""
    with tempfile.TemporaryDirectory(prefix="airia-push-") as work:
        certs, authfile, digestfile = Path(work, "certs"), Path(work, "auth.json"), Path(work, "digest")
        certs.mkdir()
        shutil.copyfile(ca_file, certs / "ca.crt")  # buildah trusts every *.crt of --cert-dir
        authfile.write_text(docker_config)
        authfile.chmod(0o600)
        buildah(
            "push",
            f"--cert-dir={certs}",
            f"--authfile={authfile}",
            f"--digestfile={digestfile}",
            built.name,
            f"docker://{destination}",
            inside_node=True,
        )
        return digestfile.read_text().strip()
