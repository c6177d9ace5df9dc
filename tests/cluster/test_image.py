"""The image built from the Dockerfile: what is in it, who it runs as, its size, its HEALTHCHECK in a running pod."""

from __future__ import annotations

import json
import stat

import pytest

from tests.cluster import image
from tests.deploy.dockerfile import DOCKERFILE, stages

VENV_LIMIT_MB = 100
IMAGE_LIMIT_MB = 330  # uncompressed: the stand-in base (~170 MB) plus the venv and the app


@pytest.fixture(scope="module")
def files(app_image: image.BuiltImage) -> dict[str, object]:
    return image.files(app_image.name)  # type: ignore[return-value]


def _config(app_image: image.BuiltImage) -> dict[str, object]:
    return json.loads(image.inspect(app_image.name))["OCIv1"]["config"]  # type: ignore[no-any-return]


def test_it_runs_as_the_unprivileged_user_10001(app_image: image.BuiltImage) -> None:
    assert _config(app_image)["User"] == "10001:10001"


def test_only_the_venv_and_the_app_are_added_to_the_base(app_image: image.BuiltImage, files: dict[str, object]) -> None:
    base = set(image.files(image.pinned_base()))
    added = sorted(set(files) - base)
    outside = [p for p in added if not p.startswith(("/opt/venv", "/opt/airia-test-pod"))]
    # useradd's own bookkeeping files are the only other change
    assert set(outside) <= {f"/etc/{name}-" for name in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")}


def test_no_tests_vcs_dev_requirements_caches_or_installers(files: dict[str, object]) -> None:
    ours = [p for p in files if p.startswith(("/opt/venv", "/opt/airia-test-pod"))]
    forbidden = [
        p
        for p in ours
        if ("/tests" in p.removeprefix("/opt/venv") and p.startswith("/opt/airia-test-pod"))
        or "/.git" in p
        or "__pycache__" in p
        or p.endswith((".pyc", "requirements-dev.txt"))
        or "/site-packages/pip/" in p
        or "/site-packages/setuptools/" in p
    ]
    assert not forbidden, forbidden[:20]
    assert sorted(p for p in files if p.startswith("/opt/airia-test-pod/") and p.count("/") == 3) == [
        "/opt/airia-test-pod/app"
    ]


def test_no_compiler_or_shell_tool_was_added(files: dict[str, object]) -> None:
    executables = [
        p
        for p, info in files.items()
        if stat.S_ISREG(info.st_mode) and info.st_mode & 0o111 and not p.startswith("/opt/")  # type: ignore[attr-defined]
    ]
    assert not [p for p in executables if p.rsplit("/", 1)[-1] in {"gcc", "cc", "curl", "wget", "make"}]


def test_sizes(app_image: image.BuiltImage, files: dict[str, object]) -> None:
    def total(prefix: str) -> int:
        return sum(
            info.st_size  # type: ignore[attr-defined]
            for p, info in files.items()
            if p.startswith(prefix) and stat.S_ISREG(info.st_mode)  # type: ignore[attr-defined]
        )

    venv_mb, image_mb = total("/opt/venv") / 1e6, total("/") / 1e6
    archive_mb = app_image.archive.stat().st_size / 1e6
    print(f"\n[image] venv {venv_mb:.1f} MB, image {image_mb:.1f} MB uncompressed, archive {archive_mb:.0f} MB")
    assert venv_mb <= VENV_LIMIT_MB
    assert image_mb <= IMAGE_LIMIT_MB


def test_the_build_ca_and_index_stay_out_of_the_runtime_image(app_image: image.BuiltImage) -> None:
    history = json.dumps(json.loads(image.inspect(app_image.name))["History"])
    assert "PIP_INDEX_URL" not in history
    assert "build-ca" not in history
    assert "PIP_CERT" not in json.dumps(_config(app_image).get("Env"))
    runtime = stages(DOCKERFILE.read_text())[-1]
    assert not [i for i in runtime.all("ARG") if "PIP" in i.arguments]
