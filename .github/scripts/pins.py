"""Verify the action pins in .github/pins.yaml against each action's own repository, with git alone.

For every recorded action: the exact version tag must point at the recorded commit (a moved or re-created tag,
as in the 2026 trivy-action tag hijack, shows up here), and the action.yml at that commit must declare the
recorded runtime, one GitHub still runs (node24, composite or docker). Nothing is taken from the workflows
themselves: tests/pipeline/test_pins.py holds those to the record, this holds the record to the sources.

    python .github/scripts/pins.py verify                      # against https://github.com
    python .github/scripts/pins.py verify --server file:///srv/mirrors --record .github/pins.yaml
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from actions_io import write_summary

LIVE_RUNTIMES = ("node24", "composite", "docker")
GIT_TIMEOUT = 120


@dataclass(frozen=True)
class ActionPin:
    action: str  # owner/repo or owner/repo/path
    version: str
    sha: str
    runs: str

    @property
    def repository(self) -> str:
        return "/".join(self.action.split("/")[:2])

    @property
    def path(self) -> str:
        return "/".join(self.action.split("/")[2:])


class GitError(Exception):
    """A git command failed; the message is git's own."""


def load_pins(record: Path) -> list[ActionPin]:
    data: Any = yaml.safe_load(record.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("actions"), dict):
        raise ValueError(f"{record}: no `actions:` mapping")
    pins = []
    for action, pin in data["actions"].items():
        if not isinstance(pin, dict) or not {"version", "sha", "runs"} <= set(pin):
            raise ValueError(f"{record}: actions.{action} needs version, sha and runs")
        pins.append(ActionPin(str(action), str(pin["version"]), str(pin["sha"]), str(pin["runs"])))
    return pins


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)
    if result.returncode != 0:
        raise GitError(result.stderr.strip() or f"git {args[0]} exited with {result.returncode}")
    return result.stdout


def tagged_commit(url: str, version: str) -> str | None:
    """The commit the tag names (an annotated tag peeled to its commit), None if there is no such tag."""
    refs = {}
    for line in git("ls-remote", "--tags", url, f"refs/tags/{version}", f"refs/tags/{version}^{{}}").splitlines():
        sha, ref = line.split("\t")
        refs[ref] = sha
    return refs.get(f"refs/tags/{version}^{{}}") or refs.get(f"refs/tags/{version}")


def declared_runtime(url: str, sha: str, path: str, workdir: Path) -> str:
    """`runs.using` of the action.yml (or action.yaml) at `sha`: one commit, its blobs fetched only when read."""
    git("init", "--quiet", "--bare", str(workdir))
    git("remote", "add", "origin", url, cwd=workdir)
    git("fetch", "--quiet", "--depth=1", "--no-tags", "--filter=blob:none", "origin", sha, cwd=workdir)
    for name in ("action.yml", "action.yaml"):
        try:
            text = git("show", f"{sha}:{path + '/' if path else ''}{name}", cwd=workdir)
        except GitError:
            continue
        metadata: Any = yaml.safe_load(text)
        return str(metadata["runs"]["using"]).strip("'\"")
    raise GitError(f"no action.yml or action.yaml under '{path or '.'}' at {sha}")


def verify(pin: ActionPin, server: str) -> list[str]:
    """What is wrong with one pin, checked in its repository; empty when the pin is right."""
    url = f"{server.rstrip('/')}/{pin.repository}"
    try:
        tagged = tagged_commit(url, pin.version)
        if tagged is None:
            return [f"{pin.action}: {url} has no tag {pin.version}"]
        if tagged != pin.sha:
            return [f"{pin.action}: tag {pin.version} points at {tagged}, the record has {pin.sha}"]
        with tempfile.TemporaryDirectory() as workdir:
            runtime = declared_runtime(url, pin.sha, pin.path, Path(workdir) / "repo.git")
    except (GitError, subprocess.TimeoutExpired) as error:
        return [f"{pin.action}: {error}"]
    problems = []
    if runtime != pin.runs:
        problems.append(f"{pin.action}: action.yml at {pin.sha} declares runs.using {runtime}, the record {pin.runs}")
    if runtime not in LIVE_RUNTIMES:
        problems.append(f"{pin.action}: runs.using {runtime} is not a runtime GitHub's runners still run")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pins.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="verify every action pin in its own repository")
    check.add_argument("--record", type=Path, default=Path(".github/pins.yaml"))
    check.add_argument("--server", default="https://github.com", help="where owner/repo repositories are")
    args = parser.parse_args(argv)

    try:
        pins = load_pins(args.record)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows, failures = [], []
    for pin in pins:
        problems = verify(pin, args.server)
        failures += problems
        rows.append(
            f"| `{pin.action}` | {pin.version} | `{pin.sha}` | {pin.runs} | {'ok' if not problems else 'FAILED'} |"
        )
        print(f"{'ok' if not problems else 'FAILED'}  {pin.action}@{pin.sha} # {pin.version} ({pin.runs})")
    header = "| action | version | commit | runs | |\n|---|---|---|---|---|"
    write_summary("\n".join(["### Action pins verified in their repositories", "", header, *rows]))
    for problem in failures:
        print(f"::error::{problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
