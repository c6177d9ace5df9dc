"""Fixtures of the deploy tests: the Kubernetes schemas kubeconform validates against, offline."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy.tools import KUBE_VERSIONS


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
