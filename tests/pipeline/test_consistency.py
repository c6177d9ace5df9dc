"""Version consistency between app/__init__.py, Chart.yaml, values.yaml and the chart's examples."""

from __future__ import annotations

from pathlib import Path

import consistency
import pytest
from consistency import ConsistencyError, Found, mismatches, read, set_version

from tests.pipeline.helpers import ROOT

CHART = """\
apiVersion: v2
name: airia-test-pod
# version and appVersion follow app/__init__.py
version: {version}
appVersion: "{app_version}"  # quoted on purpose
dependencies: []
"""
VALUES = """\
replicaCount: 1
image:
  repository: ghcr.io/airia/airia-test-pod
  # "" means appVersion
  tag: {tag}
  pullPolicy: IfNotPresent
sidecar:
  image:
    tag: "9.9.9"
"""


def make_tree(
    root: Path, app: str = "1.4.2", version: str = "1.4.2", app_version: str = "1.4.2", tag: str = '""'
) -> Path:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "__init__.py").write_text(f'"""The app."""\n\n__version__ = "{app}"\n')
    chart = root / "helm" / "airia-test-pod"
    chart.mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(CHART.format(version=version, app_version=app_version))
    (chart / "values.yaml").write_text(VALUES.format(tag=tag))
    return root


def test_consistent_tree_with_empty_image_tag(tmp_path: Path) -> None:
    assert mismatches(read(make_tree(tmp_path))) == []


def test_consistent_tree_with_exact_image_tag(tmp_path: Path) -> None:
    assert mismatches(read(make_tree(tmp_path, tag='"1.4.2"'))) == []


def test_every_mismatch_is_named(tmp_path: Path) -> None:
    found = read(make_tree(tmp_path, app="1.4.2", version="1.4.1", app_version="1.3.0", tag="1.4.0"))
    assert mismatches(found) == [
        "helm/airia-test-pod/Chart.yaml: version is '1.4.1', expected '1.4.2'",
        "helm/airia-test-pod/Chart.yaml: appVersion is '1.3.0', expected '1.4.2'",
        "helm/airia-test-pod/values.yaml: image.tag is '1.4.0', expected \"\" (use appVersion) or '1.4.2'",
    ]


def test_expected_release_version_and_bad_versions() -> None:
    assert mismatches(Found("1.4.2", "1.4.2", "1.4.2", ""), expected="1.5.0") == [
        "app/__init__.py: __version__ is '1.4.2' but the release is '1.5.0'"
    ]
    problems = mismatches(Found("v1.4", "v1.4", "v1.4", None))
    assert problems[0].startswith("app/__init__.py: __version__ 'v1.4' is not a semantic version")
    assert "image.tag is None" in problems[-1]


def test_set_version_rewrites_every_place_and_keeps_comments(tmp_path: Path) -> None:
    root = make_tree(tmp_path, tag='"1.4.2"')
    set_version(root, "1.5.0")
    assert read(root) == Found("1.5.0", "1.5.0", "1.5.0", "1.5.0")
    chart = (root / "helm/airia-test-pod/Chart.yaml").read_text()
    assert 'appVersion: "1.5.0"  # quoted on purpose' in chart
    assert "# version and appVersion follow app/__init__.py" in chart
    values = (root / "helm/airia-test-pod/values.yaml").read_text()
    assert 'tag: "9.9.9"' in values  # a nested image block elsewhere is not touched
    assert '  # "" means appVersion' in values


def test_set_version_leaves_an_empty_image_tag_empty(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    before = (root / "helm/airia-test-pod/values.yaml").read_text()
    set_version(root, "2.0.0-rc.1")
    assert read(root) == Found("2.0.0-rc.1", "2.0.0-rc.1", "2.0.0-rc.1", "")
    assert (root / "helm/airia-test-pod/values.yaml").read_text() == before


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("replicaCount: 1\n", "no top-level `image:` block"),
        ("image:\n  repository: x\nother: 1\n", "no `tag:` under `image:`"),
        ("image:\n  repository: x\n", "no `tag:` under `image:`"),
    ],
)
def test_set_version_refuses_values_it_cannot_edit(tmp_path: Path, values: str, message: str) -> None:
    root = make_tree(tmp_path)
    (root / "helm/airia-test-pod/values.yaml").write_text(values)
    before = (root / "app/__init__.py").read_text()
    with pytest.raises(ConsistencyError, match=message):
        set_version(root, "1.5.0")
    assert (root / "app/__init__.py").read_text() == before  # nothing written when one edit is impossible


def test_set_version_refuses_a_bad_version_and_duplicate_keys(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    with pytest.raises(ConsistencyError, match="not a semantic version"):
        set_version(root, "v1.5.0")
    chart = root / "helm/airia-test-pod/Chart.yaml"
    chart.write_text(chart.read_text() + "version: 1.4.2\n")
    with pytest.raises(ConsistencyError, match="exactly one line"):
        set_version(root, "1.5.0")


def test_set_version_detects_a_value_yaml_reads_differently(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    chart = root / "helm/airia-test-pod/Chart.yaml"
    chart.write_text(chart.read_text().replace("version: 1.4.2", "version: &chart 1.4.2"))  # a YAML anchor
    with pytest.raises(ConsistencyError, match="after set-version"):
        set_version(root, "1.5.0")


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("app/__init__.py", "VERSION = 1\n", "no `__version__"),
        ("helm/airia-test-pod/Chart.yaml", "a: [unclosed\n", "not valid YAML"),
        ("helm/airia-test-pod/values.yaml", "- a list\n", "expected a mapping"),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, file: str, content: str, message: str) -> None:
    root = make_tree(tmp_path)
    (root / file).write_text(content)
    with pytest.raises(ConsistencyError, match=message):
        read(root)


def test_cli_check_and_set_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_tree(tmp_path)
    assert consistency.main(["--root", str(root), "check"]) == 0
    assert capsys.readouterr().out == "consistent: 1.4.2\n"
    assert consistency.main(["--root", str(root), "check", "--expect", "v1.4.2"]) == 0
    assert consistency.main(["--root", str(root), "check", "--expect", "1.5.0"]) == 1
    assert "but the release is '1.5.0'" in capsys.readouterr().err
    assert consistency.main(["--root", str(root), "set-version", "1.5.0"]) == 0
    assert consistency.main(["--root", str(root), "check", "--expect", "1.5.0"]) == 0


def test_cli_reports_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert consistency.main(["--root", str(tmp_path), "check"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert consistency.main(["--root", str(tmp_path), "set-version", "1.0.0"]) == 2


def test_the_repository_itself_is_consistent() -> None:
    assert mismatches(read(ROOT)) == []


EXAMPLE = """\
# a hook Job that runs the product's image: ghcr.io/airia/airia-test-pod:0.0.1 in a comment is not an image
apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      initContainers:
        - image: "registry.example/mirror/airia-test-pod:{tag}"
      containers:
        - name: gate
          image: ghcr.io/airia/airia-test-pod:{tag}  # the installed release's tag
        - name: other
          image: ghcr.io/airia/other:{tag}
"""


def test_the_examples_shipped_with_the_chart_run_the_released_image(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    example = root / "helm/airia-test-pod/examples/gitops/job.yaml"
    example.parent.mkdir(parents=True)
    example.write_text(EXAMPLE.format(tag="1.4.1"))
    relative = "helm/airia-test-pod/examples/gitops/job.yaml"
    assert mismatches(read(root)) == [f"{relative}: runs airia-test-pod:1.4.1, expected '1.4.2'"] * 2
    set_version(root, "1.5.0")
    assert read(root).example_tags == ((relative, "1.5.0"), (relative, "1.5.0"))
    text = example.read_text()
    assert 'mirror/airia-test-pod:1.5.0"' in text and "airia-test-pod:1.5.0  # the installed release's tag" in text
    assert "ghcr.io/airia/other:1.4.1" in text and "airia-test-pod:0.0.1 in a comment" in text  # left as they were
