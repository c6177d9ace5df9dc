"""Fixtures of the deploy tests: the Kubernetes schemas kubeconform validates against, offline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy.tools import require, run

KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())  # the oldest we test and the newest bundled


@pytest.fixture(scope="session")
def kubeconform_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubernetes-validate's bundled schemas, with their `/api/_definitions.json` references made file URLs."""
    bundled = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    root = tmp_path_factory.mktemp("kube-schemas")
    for version in KUBE_VERSIONS:
        source = bundled / f"v{version}-local-strict"
        target = root / source.name
        target.mkdir()
        definitions = (target / "_definitions.json").as_uri()
        for schema in source.glob("*.json"):
            (target / schema.name).write_text(schema.read_text().replace('"/api/_definitions.json', f'"{definitions}'))
    return root


def kubeconform(manifest: Path, kube_version: str, schemas: Path) -> subprocess.CompletedProcess[str]:
    """`kubeconform -strict` of a manifest file against the bundled schemas of `kube_version`."""
    location = f"{schemas}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}"
    location += "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    command = [require("kubeconform"), "-strict", "-summary", "-kubernetes-version", kube_version]
    return run([*command, "-schema-location", location, str(manifest)])
