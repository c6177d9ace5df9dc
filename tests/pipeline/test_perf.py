"""Build-performance regression: median baseline, ratio and floor, insufficient history, append-only history."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import perf
import pytest
from hypothesis import given
from hypothesis import strategies as st
from perf import HistoryError, Record, Thresholds, append, evaluate, image_size, load_history

MB = 1_000_000


def record(commit: str, seconds: float = 100.0, size: int = 60 * MB, attempt: str = "1-1") -> Record:
    return Record(commit, attempt, seconds, size, "2026-01-01T00:00:00+00:00")


HISTORY = [
    record(f"c{i}", seconds, size)
    for i, (seconds, size) in enumerate([(100, 60 * MB), (104, 61 * MB), (98, 60 * MB), (300, 60 * MB), (101, 59 * MB)])
]  # one slow outlier: the median ignores it


def test_fewer_records_than_the_window_is_insufficient_never_pass() -> None:
    verdict = evaluate(HISTORY[:4], record("new", 500, 500 * MB))
    assert (verdict.status, verdict.reason) == ("insufficient_history", "4 earlier records, 5 needed for a baseline")


def test_within_ratio_passes() -> None:
    verdict = evaluate(HISTORY, record("new", 120, 70 * MB))
    assert verdict.status == "pass"
    assert [(m.name, m.baseline, m.regressed) for m in verdict.metrics] == [
        ("build_seconds", 101.0, False),
        ("image_bytes", 60 * MB, False),
    ]


def test_regression_needs_both_the_ratio_and_the_absolute_floor() -> None:
    assert evaluate(HISTORY, record("slow", 140, 60 * MB)).status == "regression"  # 1.39x and +39 s
    fast = [record(f"f{i}", 10, 60 * MB) for i in range(5)]
    assert evaluate(fast, record("new", 30, 60 * MB)).status == "pass"  # 3x but only +20 s: noise on a fast build
    verdict = evaluate(HISTORY, record("big", 100, 90 * MB))  # 1.5x and +30 MB
    assert verdict.status == "regression"
    assert verdict.reason == "image_bytes above 1.25× the median of the last 5 builds"


def test_the_current_record_is_never_its_own_baseline() -> None:
    current = record("c4", 101, 59 * MB)
    assert evaluate(HISTORY, current).status == "insufficient_history"  # c4 is one of the five
    assert evaluate([*HISTORY, record("c5")], current).status == "pass"


def test_window_below_five_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        evaluate(HISTORY, record("x"), Thresholds(window=3))


@given(st.lists(st.floats(1, 1000), max_size=12), st.floats(1, 10_000))
def test_short_history_never_passes_and_a_full_one_always_decides(seconds: list[float], current: float) -> None:
    history = [record(f"c{i}", s) for i, s in enumerate(seconds)]
    status = evaluate(history, record("now", current)).status
    assert (status == "insufficient_history") == (len(seconds) < 5)


def test_history_is_append_only_and_keyed_by_commit_and_attempt(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    assert append(path, record("a")) is True
    first_line = path.read_text()
    assert append(path, record("a")) is False  # the same record again: a re-run of the same step
    assert append(path, record("a", attempt="1-2", seconds=130)) is True  # a re-run of the workflow
    with pytest.raises(HistoryError, match="already recorded differently"):
        append(path, record("a", seconds=999))
    assert path.read_text().startswith(first_line)
    assert [r.key for r in load_history(path)] == [("a", "1-1"), ("a", "1-2")]


def test_a_broken_history_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps({"commit": "a"}) + "\n")
    with pytest.raises(HistoryError, match=r"history.jsonl:1: not a history record"):
        load_history(path)
    assert load_history(tmp_path / "missing.jsonl") == []


# --- compressed image size from a real OCI layout tarball ---------------------------------------------------


def oci_layout(path: Path, *, with_index: bool = True) -> Path:
    """An OCI image layout as `docker buildx build --output type=oci,dest=...` writes it."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": f"sha256:{digest}", "size": len(data)}

    def manifest(layer_sizes: list[int]) -> bytes:
        config = blob(json.dumps({"architecture": "amd64", "os": "linux"}).encode())
        layers = [
            {**blob(bytes(size)), "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"} for size in layer_sizes
        ]
        return json.dumps({"schemaVersion": 2, "config": config, "layers": layers}).encode()

    amd64 = {**blob(manifest([1000, 2500])), "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    arm64 = {**blob(manifest([7777])), "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    attestation = {**blob(manifest([50])), "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    amd64["platform"] = {"os": "linux", "architecture": "amd64"}
    arm64["platform"] = {"os": "linux", "architecture": "arm64"}
    attestation["platform"] = {"os": "unknown", "architecture": "unknown"}
    if with_index:
        index = json.dumps({"schemaVersion": 2, "manifests": [attestation, arm64, amd64]}).encode()
        top = [{**blob(index), "mediaType": "application/vnd.oci.image.index.v1+json"}]
    else:
        top = [{key: value for key, value in amd64.items() if key != "platform"}]
    with tarfile.open(path, "w") as layout:
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps({"manifests": top}).encode()}
        files |= {f"blobs/sha256/{digest}": data for digest, data in blobs.items()}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            layout.addfile(info, io.BytesIO(data))
    return path


def test_image_size_sums_config_and_layers_of_the_platform(tmp_path: Path) -> None:
    layout = oci_layout(tmp_path / "image.tar")
    config_size = len(json.dumps({"architecture": "amd64", "os": "linux"}))
    assert image_size(layout) == config_size + 3500
    assert image_size(layout, "linux/arm64") == config_size + 7777
    assert image_size(oci_layout(tmp_path / "single.tar", with_index=False)) == config_size + 3500
    with pytest.raises(HistoryError, match="no linux/s390x image"):
        image_size(layout, "linux/s390x")


def test_image_size_rejects_what_is_not_a_layout(tmp_path: Path) -> None:
    not_tar = tmp_path / "image.tar"
    not_tar.write_text("plain text")
    with pytest.raises(HistoryError, match="not an OCI image layout"):
        image_size(not_tar)


# --- the CLI ---------------------------------------------------------------------------------------------------


def test_cli_records_evaluates_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.jsonl"
    output, summary, body = tmp_path / "out", tmp_path / "summary.md", tmp_path / "issue.md"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    layout = oci_layout(tmp_path / "image.tar")
    assert perf.main(["image-size", "--oci", str(layout)]) == 0
    size = int(capsys.readouterr().out)

    def build(commit: str, seconds: float) -> int:
        common = ["--history", str(history), "--commit", commit, "--attempt", "77-1"]
        assert perf.main(["record", *common, "--build-seconds", str(seconds), "--image-bytes", str(size)]) == 0
        return perf.main(["evaluate", *common, "--issue-body", str(body)])

    assert build("c0", 100) == 0
    assert output.read_text().endswith("status=insufficient_history\n")
    for i in range(1, 5):
        build(f"c{i}", 100)
    assert build("c5", 200) == 0
    assert output.read_text().endswith("status=regression\n")
    assert "### Build performance: regression" in body.read_text()
    assert "| build_seconds | 200.0 | 100.0 | True |" in summary.read_text()
    assert build("c5", 200) == 0  # the same record again is not a conflict


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "history.jsonl"
    assert perf.main(["evaluate", "--history", str(history), "--commit", "x", "--attempt", "77-1"]) == 2
    assert "record it first" in capsys.readouterr().err
    assert perf.main(["image-size", "--oci", str(tmp_path / "missing.tar")]) == 2
