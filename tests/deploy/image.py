"""Reproduce the image without a container engine: its venv, its files, its environment, its user.

The venv is built by running the builder stage's own RUN lines (those that touch the venv path the runtime
stage copies), with the builder's COPY destinations mapped to the build context and `python` being a
Python 3.11 like the base image's. It is cached by the hash of those commands, the requirements and the
interpreter, because installing every SDK takes a while.

    python -m tests.deploy.image size   # build (or reuse) the venv and print its size and largest packages
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.dockercontext import list_context
from tests.deploy.dockerfile import DOCKERFILE, Stage, copy_sources, stages

ROOT = DOCKERFILE.parent
# The python base image's PATH: what `$PATH` expands to in the runtime stage's ENV.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CACHE = Path(os.environ.get("TESTPOD_IMAGE_CACHE") or "/var/tmp/airia-test-pod")  # readable by the image's user
PYTHON_CANDIDATES = ("/usr/local/bin/python3.11", "/usr/bin/python3.11")


def _stage(name: str) -> Stage:
    return next(stage for stage in stages(DOCKERFILE.read_text()) if stage.name == name)


def runtime() -> Stage:
    return stages(DOCKERFILE.read_text())[-1]


def interpreter() -> str:
    """A Python 3.11 that an unprivileged user can run (pyenv's, under /root, is not one)."""
    chosen = os.environ.get("TESTPOD_IMAGE_PYTHON")
    for candidate in [chosen] if chosen else PYTHON_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return candidate
    raise FileNotFoundError(f"no Python 3.11 at {', '.join(PYTHON_CANDIDATES)} (apt-get install python3.11-venv)")


@dataclass(frozen=True)
class VenvRecipe:
    image_path: str  # where the runtime stage expects it, e.g. /opt/venv
    commands: list[str]  # the builder's RUN lines that build it, as written
    copies: dict[str, Path]  # builder COPY destination -> file in the build context


def venv_recipe() -> VenvRecipe:
    flags, (source,), destination = next(
        copy_sources(i) for i in runtime().all("COPY") if copy_sources(i)[0].get("from") == "builder"
    )
    assert source == destination, "the venv must keep its path: its scripts hard-code it"
    builder = _stage(flags["from"])
    copies = {}
    for instruction in builder.all("COPY"):
        _, sources, target = copy_sources(instruction)
        copies[target] = ROOT / sources[0]
    commands = [i.arguments for i in builder.all("RUN") if source in i.arguments]
    return VenvRecipe(source, commands, copies)


def _readable_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def build_venv() -> Path:
    """Run the builder's venv commands into the cache (or reuse an identical earlier build)."""
    recipe = venv_recipe()
    python = interpreter()
    version = subprocess.run([python, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    key = hashlib.sha256()
    for part in (version, *recipe.commands, *(f"{d}={s.read_text()}" for d, s in sorted(recipe.copies.items()))):
        key.update(part.encode() + b"\0")
    venv = _readable_dir(CACHE) / f"image-venv-{key.hexdigest()[:16]}"
    if (venv / ".complete").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    with tempfile.TemporaryDirectory() as shims:
        shim = Path(shims, "python")  # the base image's `python`; exec, so the venv records the real interpreter
        shim.write_text(f'#!/bin/sh\nexec {python} "$@"\n')
        shim.chmod(0o755)
        env = {"PATH": f"{shims}:{BASE_PATH}", "HOME": shims, "LANG": "C.UTF-8"}
        for written in recipe.commands:
            command = written.replace(recipe.image_path, str(venv))
            for destination, source in recipe.copies.items():
                command = command.replace(destination, str(source))
            result = subprocess.run(
                ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, check=False, timeout=900
            )
            if result.returncode != 0:
                raise RuntimeError(f"building the image venv failed: {command}\n{result.stdout}\n{result.stderr}")
    (venv / ".complete").write_text(version + "\n")
    return venv


@dataclass(frozen=True)
class ImageRoot:
    root: Path  # stands in for the container's /
    workdir: Path  # WORKDIR, under root
    environment: dict[str, str]  # the runtime stage's ENV, with the venv's real path


def assemble(venv: Path) -> ImageRoot:
    """The runtime stage's files under a fresh root directory, and its ENV.

    `COPY` sources come from the build context exactly as .dockerignore filters it, so a file the context
    leaves out is missing here too.
    """
    stage = runtime()
    root = Path(tempfile.mkdtemp(prefix="image-root-", dir=_readable_dir(CACHE)))
    root.chmod(0o755)
    workdir_instruction = stage.last("WORKDIR")
    assert workdir_instruction is not None
    workdir = _readable_dir(root / workdir_instruction.arguments.lstrip("/"))
    context = list_context(ROOT)
    for instruction in stage.all("COPY"):
        flags, sources, destination = copy_sources(instruction)
        if "from" in flags:
            continue
        target = workdir / destination if not destination.startswith("/") else root / destination.lstrip("/")
        for source in sources:
            prefix = source.rstrip("/") + "/"
            for relative in (path for path in context if path.startswith(prefix) or path == source):
                placed = target / relative[len(prefix) :] if relative.startswith(prefix) else target
                _readable_dir(placed.parent)
                shutil.copyfile(ROOT / relative, placed)
                placed.chmod(0o644)
    for directory in [root, *root.rglob("*")]:
        if directory.is_dir():
            directory.chmod(0o755)
    recipe = venv_recipe()
    environment = {
        key: value.replace(recipe.image_path, str(venv)) for key, value in stage.env({"PATH": BASE_PATH}).items()
    }
    return ImageRoot(root, workdir, environment)


def as_image_user(command: list[str]) -> list[str]:
    """Run as the image's USER (numeric uid:gid), without privileges, when we are root; as ourselves otherwise."""
    user = runtime().last("USER")
    assert user is not None
    uid, _, gid = user.arguments.partition(":")
    if os.geteuid() != 0:
        return command
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups", "--no-new-privs"]
    return [*setpriv, "--", *command]


def image_user() -> tuple[int, int]:
    user = runtime().last("USER")
    assert user is not None
    uid, _, gid = user.arguments.partition(":")
    return int(uid), int(gid or uid)


def package_sizes(venv: Path) -> tuple[int, list[tuple[str, int]]]:
    """The venv's total bytes and the bytes of each top-level entry of site-packages, largest first."""

    def size(path: Path) -> int:
        if path.is_file() or path.is_symlink():
            return path.lstat().st_size
        return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() or f.is_symlink())

    (site,) = venv.glob("lib/python3*/site-packages")
    packages = sorted(((p.name, size(p)) for p in site.iterdir()), key=lambda item: -item[1])
    return size(venv), packages


def main(argv: list[str]) -> int:
    if argv != ["size"]:
        print("usage: python -m tests.deploy.image size", file=sys.stderr)
        return 2
    venv = build_venv()
    total, packages = package_sizes(venv)
    print(f"{venv}: {total / 1e6:.1f} MB")
    for name, size in packages[:12]:
        print(f"  {size / 1e6:6.1f} MB  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
