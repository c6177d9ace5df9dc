"""Build-performance regression: build time and compressed image size against recent history.

History is a JSON-lines file, append-only, one record per (commit, attempt). A metric regresses only when it
exceeds the median of the previous `window` records by both a ratio and an absolute floor, so noise on a fast
build or a few kilobytes never raises an alarm. With fewer than `window` earlier records the verdict is
"insufficient_history", never "pass".

    python .github/scripts/perf.py image-size --oci image.tar
    python .github/scripts/perf.py record --history perf-history.jsonl --commit SHA --attempt 1 \
        --build-seconds 73.4 --image-bytes 61234567
    python .github/scripts/perf.py evaluate --history perf-history.jsonl --commit SHA --attempt 9876543210-1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from actions_io import write_outputs, write_summary

Status = Literal["pass", "regression", "insufficient_history"]
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}


class HistoryError(Exception):
    """The history file or an image layout cannot be used; the message says why."""


@dataclass(frozen=True)
class Record:
    commit: str
    attempt: str  # the run and its attempt, e.g. "9876543210-1": a scheduled re-measure of a commit is a new key
    build_seconds: float
    image_bytes: int
    recorded_at: str
    ref: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.commit, self.attempt)


@dataclass(frozen=True)
class MetricResult:
    name: str
    value: float
    baseline: float | None  # median of the window
    regressed: bool


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str
    metrics: list[MetricResult]


def load_history(path: Path) -> list[Record]:
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(Record(**json.loads(line)))
        except (ValueError, TypeError) as error:
            raise HistoryError(f"{path}:{number}: not a history record ({error})") from None
    return records


def append(path: Path, record: Record) -> bool:
    """Append `record`; False if the identical record is already there. Never rewrites earlier lines."""
    for existing in load_history(path):
        if existing.key == record.key:
            if existing == record:
                return False
            raise HistoryError(f"commit {record.commit} attempt {record.attempt} is already recorded differently")
    with path.open("a", encoding="utf-8") as history:
        history.write(json.dumps(asdict(record), sort_keys=True) + "\n")
    return True


@dataclass(frozen=True)
class Thresholds:
    """A regression: above max_ratio × the median of the last `window` builds, and by more than the floor."""

    window: int = 5
    max_ratio: float = 1.25
    floor_seconds: float = 30.0
    floor_bytes: int = 20_000_000


def evaluate(history: Sequence[Record], current: Record, thresholds: Thresholds = Thresholds()) -> Verdict:
    window, max_ratio = thresholds.window, thresholds.max_ratio
    floor_seconds, floor_bytes = thresholds.floor_seconds, thresholds.floor_bytes
    if window < 5:
        raise ValueError("the baseline needs a window of at least 5 records")
    previous = [record for record in history if record.key != current.key][-window:]
    if len(previous) < window:
        return Verdict("insufficient_history", f"{len(previous)} earlier records, {window} needed for a baseline", [])
    metrics = []
    for name, floor in (("build_seconds", floor_seconds), ("image_bytes", float(floor_bytes))):
        value = float(getattr(current, name))
        baseline = statistics.median(float(getattr(record, name)) for record in previous)
        regressed = value > baseline * max_ratio and value - baseline > floor
        metrics.append(MetricResult(name, value, baseline, regressed))
    regressed_names = [m.name for m in metrics if m.regressed]
    if regressed_names:
        return Verdict(
            "regression",
            f"{', '.join(regressed_names)} above {max_ratio:g}× the median of the last {window} builds",
            metrics,
        )
    return Verdict("pass", f"within {max_ratio:g}× the median of the last {window} builds", metrics)


def _blob(layout: tarfile.TarFile, digest: str) -> dict[str, Any]:
    algorithm, _, hex_digest = digest.partition(":")
    member = layout.extractfile(f"blobs/{algorithm}/{hex_digest}")
    if member is None:
        raise HistoryError(f"blob {digest} missing from the image layout")
    data: dict[str, Any] = json.load(member)
    return data


def image_size(oci_tar: Path, platform: str = "linux/amd64") -> int:
    """Compressed size of one platform's image in an OCI layout tarball: config plus layers, as pushed."""
    os_name, _, architecture = platform.partition("/")
    try:
        with tarfile.open(oci_tar) as layout:
            member = layout.extractfile("index.json")
            if member is None:
                raise HistoryError("index.json is not a file")
            pending = list(json.load(member)["manifests"])
            while pending:
                descriptor = pending.pop(0)
                if descriptor.get("mediaType") in INDEX_TYPES:
                    pending.extend(_blob(layout, descriptor["digest"])["manifests"])
                    continue
                wanted = descriptor.get("platform", {"os": os_name, "architecture": architecture})
                if (wanted.get("os"), wanted.get("architecture")) != (os_name, architecture):
                    continue  # another platform, or an attestation (platform unknown/unknown)
                manifest = _blob(layout, descriptor["digest"])
                return int(manifest["config"]["size"]) + sum(int(layer["size"]) for layer in manifest["layers"])
    except (OSError, tarfile.TarError, KeyError, ValueError) as error:
        raise HistoryError(f"{oci_tar}: not an OCI image layout ({type(error).__name__}: {error})") from None
    raise HistoryError(f"{oci_tar}: no {platform} image in the layout")


def markdown(verdict: Verdict, current: Record) -> str:
    lines = [
        f"### Build performance: {verdict.status.replace('_', ' ')}",
        "",
        f"Commit `{current.commit}` attempt {current.attempt}: {verdict.reason}.",
    ]
    if verdict.metrics:
        lines += ["", "| metric | this build | median baseline | regressed |", "| --- | ---: | ---: | --- |"]
        for metric in verdict.metrics:
            lines.append(f"| {metric.name} | {metric.value:,.1f} | {metric.baseline or 0:,.1f} | {metric.regressed} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perf.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    size = commands.add_parser("image-size", help="print the compressed size of an OCI layout tarball")
    size.add_argument("--oci", type=Path, required=True)
    size.add_argument("--platform", default="linux/amd64")
    record = commands.add_parser("record", help="append this build's figures to the history")
    evaluation = commands.add_parser("evaluate", help="compare this build with the history's median")
    for sub in (record, evaluation):
        sub.add_argument("--history", type=Path, required=True, help="JSON-lines history file")
        sub.add_argument("--commit", required=True)
        sub.add_argument("--attempt", required=True, help="run id and attempt, e.g. 9876543210-1")
    record.add_argument("--build-seconds", type=float, required=True)
    record.add_argument("--image-bytes", type=int, required=True)
    record.add_argument("--ref", default="")
    evaluation.add_argument("--window", type=int, default=5)
    evaluation.add_argument("--max-ratio", type=float, default=1.25)
    evaluation.add_argument("--floor-seconds", type=float, default=30.0)
    evaluation.add_argument("--floor-bytes", type=int, default=20_000_000)
    evaluation.add_argument("--issue-body", type=Path, help="write the Markdown report here too")
    args = parser.parse_args(argv)

    try:
        if args.command == "image-size":
            size_bytes = image_size(args.oci, args.platform)
            print(size_bytes)
            write_outputs(bytes=str(size_bytes))
            return 0
        if args.command == "record":
            entry = Record(
                commit=args.commit,
                attempt=args.attempt,
                build_seconds=round(args.build_seconds, 3),
                image_bytes=args.image_bytes,
                recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
                ref=args.ref,
            )
            added = append(args.history, entry)
            print(f"{'recorded' if added else 'already recorded'}: {args.commit} attempt {args.attempt}")
            return 0
        history = load_history(args.history)
        current = next((r for r in history if r.key == (args.commit, args.attempt)), None)
        if current is None:
            raise HistoryError(f"commit {args.commit} attempt {args.attempt} is not in {args.history}; record it first")
        thresholds = Thresholds(args.window, args.max_ratio, args.floor_seconds, args.floor_bytes)
        verdict = evaluate(history, current, thresholds)
    except (HistoryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = markdown(verdict, current)
    print(report, end="")
    if args.issue_body:
        args.issue_body.write_text(report, encoding="utf-8")
    write_outputs(status=verdict.status)
    write_summary(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
