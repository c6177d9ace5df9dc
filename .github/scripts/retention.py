"""Registry clean-up: which container package versions to keep and which to delete, and the deletion itself.

Rules, in order:
- a version carrying a release tag (a full version `1.4.2`/`v1.4.2-rc.1`, a moving `1`/`v1.4`, or `latest`)
  is always kept;
- of the development images (every other tagged version) the newest `keep_dev` are kept;
- every version younger than `min_age_days` is kept;
- every manifest a kept multi-arch index references (platform images, attestations) is kept, and so is an
  artifact tagged `sha256-<digest>.*` (signatures) of a kept digest;
- the rest is deleted, unless that would delete more than `max_delete_count` versions or more than
  `max_delete_share` of them: then the plan is aborted with zero deletions.

The plan is one JSON file: a dry run shows it, a real run executes exactly it. A 404 on delete counts as done.

    gh api --paginate --slurp /orgs/ORG/packages/container/NAME/versions > versions.json
    python .github/scripts/retention.py kept --versions versions.json          # digests whose manifests to fetch
    python .github/scripts/retention.py plan --versions versions.json --manifests manifests/ --output plan.json
    python .github/scripts/retention.py execute --plan plan.json --package-path /orgs/ORG/packages/container/NAME
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from actions_io import api_items, write_outputs, write_summary
from versions import is_moving_tag, is_semver_tag

_T = TypeVar("_T")
_ATTACHED = re.compile(r"^sha256-(?P<hex>[0-9a-f]{64})(?:\.\w+)?$")


class PlanError(Exception):
    """The input cannot be planned safely; the message says why."""


@dataclass(frozen=True)
class PackageVersion:
    id: int
    digest: str
    created_at: datetime
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    keep_dev: int = 10
    min_age_days: float = 14.0
    max_delete_share: float = 0.5
    max_delete_count: int = 200

    def __post_init__(self) -> None:
        if self.keep_dev < 0 or self.min_age_days < 0 or self.max_delete_count < 0:
            raise ValueError("keep-dev, min-age-days and max-delete-count must not be negative")
        if not 0 <= self.max_delete_share <= 1:
            raise ValueError("max-delete-share must be between 0 and 1")


@dataclass(frozen=True)
class Entry:
    id: int
    digest: str
    tags: list[str]
    created_at: str
    reason: str


@dataclass
class Plan:
    keep: list[Entry] = field(default_factory=list)
    delete: list[Entry] = field(default_factory=list)
    aborted: str | None = None


def is_release_tag(tag: str) -> bool:
    return tag == "latest" or is_semver_tag(tag) or is_moving_tag(tag)


def parse_versions(data: Any) -> list[PackageVersion]:
    """The package versions API answer: one array, or `gh api --paginate --slurp`'s array of pages."""
    try:
        items = api_items(data, "package versions")
    except ValueError as error:
        raise PlanError(str(error)) from None
    versions = []
    for item in items:
        try:
            tags = item.get("metadata", {}).get("container", {}).get("tags", [])
            versions.append(
                PackageVersion(
                    id=int(item["id"]),
                    digest=str(item["name"]),
                    created_at=datetime.fromisoformat(str(item["created_at"]).replace("Z", "+00:00")),
                    tags=tuple(str(tag) for tag in tags),
                )
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise PlanError(f"not a package version: {json.dumps(item)[:200]} ({type(error).__name__})") from None
    return versions


def kept_by_rules(versions: Sequence[PackageVersion], policy: Policy, now: datetime) -> dict[str, str]:
    """Digest → reason for every version the tag and age rules keep (before index references are followed)."""
    kept: dict[str, str] = {}
    for version in versions:
        release_tags = [tag for tag in version.tags if is_release_tag(tag)]
        if release_tags:
            kept[version.digest] = f"release tag {release_tags[0]}"
    development = sorted(
        (v for v in versions if v.tags and v.digest not in kept), key=lambda v: v.created_at, reverse=True
    )
    for version in development[: policy.keep_dev]:
        kept[version.digest] = f"one of the newest {policy.keep_dev} development images"
    cutoff = now - timedelta(days=policy.min_age_days)
    for version in versions:
        if version.digest not in kept and version.created_at > cutoff:
            kept[version.digest] = f"younger than {policy.min_age_days:g} days"
    return kept


def plan(
    versions: Sequence[PackageVersion], children: Mapping[str, Sequence[str]], policy: Policy, now: datetime
) -> Plan:
    """Keep/delete for every version. `children` maps each rule-kept digest to the digests its manifest lists."""
    kept = kept_by_rules(versions, policy, now)
    unknown = sorted(digest for digest in kept if digest not in children)
    if unknown:
        raise PlanError(f"manifests not supplied for kept versions (their children are unknown): {', '.join(unknown)}")
    queue = list(kept)
    while queue:  # everything a kept index references is kept, transitively
        parent = queue.pop()
        for child in children.get(parent, ()):
            if child not in kept:
                kept[child] = f"referenced by kept index {parent}"
                queue.append(child)
    for version in versions:  # signatures and other artifacts attached to a kept digest by tag
        for tag in version.tags:
            match = _ATTACHED.match(tag)
            if match and f"sha256:{match['hex']}" in kept and version.digest not in kept:
                kept[version.digest] = f"artifact {tag} of a kept image"

    result = Plan()
    for version in sorted(versions, key=lambda v: v.created_at, reverse=True):
        entry = Entry(
            version.id,
            version.digest,
            list(version.tags),
            version.created_at.isoformat(),
            kept.get(version.digest, "not kept by any rule"),
        )
        (result.keep if version.digest in kept else result.delete).append(entry)
    share = len(result.delete) / len(versions) if versions else 0.0
    if len(result.delete) > policy.max_delete_count:
        result.aborted = f"{len(result.delete)} deletions exceed the limit of {policy.max_delete_count}"
    elif share > policy.max_delete_share:
        result.aborted = f"deleting {share:.0%} of all versions exceeds the limit of {policy.max_delete_share:.0%}"
    if result.aborted:
        result.keep += [Entry(**{**asdict(e), "reason": "kept: plan aborted"}) for e in result.delete]
        result.delete = []
    return result


def load_children(directory: Path) -> dict[str, list[str]]:
    """Raw manifests saved as DIR/<hex>.json (`docker buildx imagetools inspect --raw IMAGE@sha256:<hex>`)."""
    children = {}
    for path in sorted(directory.glob("*.json")):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            children[f"sha256:{path.stem}"] = [str(m["digest"]) for m in manifest.get("manifests", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise PlanError(f"{path}: not a manifest ({type(error).__name__})") from None
    return children


def load_plan(path: Path) -> Plan:
    data = json.loads(path.read_text(encoding="utf-8"))
    return Plan(
        keep=[Entry(**entry) for entry in data["keep"]],
        delete=[Entry(**entry) for entry in data["delete"]],
        aborted=data["aborted"],
    )


@dataclass
class Outcome:
    deleted: list[int] = field(default_factory=list)
    already_gone: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def execute(deletions: Sequence[Entry], client: httpx.Client, package_path: str) -> Outcome:
    """DELETE every planned version; 204 deleted, 404 already gone (done), anything else a failure."""
    outcome = Outcome()
    for entry in deletions:
        try:
            response = client.delete(f"{package_path.rstrip('/')}/versions/{entry.id}")
        except httpx.HTTPError as error:
            outcome.failed[entry.id] = type(error).__name__
            continue
        if response.status_code in (200, 202, 204):
            outcome.deleted.append(entry.id)
        elif response.status_code == 404:
            outcome.already_gone.append(entry.id)
        else:
            outcome.failed[entry.id] = f"HTTP {response.status_code}"
    return outcome


def markdown(result: Plan) -> str:
    lines = [f"### Registry clean-up plan: keep {len(result.keep)}, delete {len(result.delete)}", ""]
    if result.aborted:
        lines += [f"**Aborted, nothing will be deleted:** {result.aborted}.", ""]
    lines += ["| action | id | digest | tags | created | reason |", "| --- | --- | --- | --- | --- | --- |"]
    for action, entries in (("delete", result.delete), ("keep", result.keep)):
        for e in entries:
            tags = ", ".join(e.tags) or "(untagged)"
            lines.append(f"| {action} | {e.id} | `{e.digest[:19]}` | {tags} | {e.created_at[:10]} | {e.reason} |")
    return "\n".join(lines) + "\n"


def _or_default(convert: Callable[[str], _T], default: _T) -> Callable[[str], _T]:
    """An argument type where an empty value (a workflow input a scheduled run has not got) means the default.

    Only empty means the default: an explicit 0 stays 0.
    """

    def parse(text: str) -> _T:
        return convert(text) if text.strip() else default

    parse.__name__ = convert.__name__  # argparse names it in "invalid int value"
    return parse


def _add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--versions", type=Path, required=True, help="JSON from the package versions API")
    parser.add_argument(
        "--keep-dev", type=_or_default(int, Policy.keep_dev), default=Policy.keep_dev, help="empty: the default"
    )
    parser.add_argument(
        "--min-age-days",
        type=_or_default(float, Policy.min_age_days),
        default=Policy.min_age_days,
        help="empty: the default",
    )
    parser.add_argument("--max-delete-share", type=float, default=Policy.max_delete_share)
    parser.add_argument("--max-delete-count", type=int, default=Policy.max_delete_count)
    parser.add_argument("--now", type=datetime.fromisoformat, help="ISO time to plan at (default: now)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retention.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_policy_arguments(commands.add_parser("kept", help="print the digests the rules keep, one a line"))
    planner = commands.add_parser("plan", help="write the keep/delete plan (exit 1 when aborted)")
    _add_policy_arguments(planner)
    planner.add_argument("--manifests", type=Path, required=True, help="directory of raw manifests (<hex>.json)")
    planner.add_argument("--output", type=Path, required=True, help="where to write the plan JSON")
    executor = commands.add_parser("execute", help="delete exactly the plan's versions")
    executor.add_argument("--plan", type=Path, required=True)
    executor.add_argument("--package-path", required=True, help="e.g. /orgs/ORG/packages/container/NAME")
    executor.add_argument("--api-url", default=os.environ.get("GITHUB_API_URL", "https://api.github.com"))
    args = parser.parse_args(argv)

    try:
        if args.command == "execute":
            return _execute_command(args)
        versions = parse_versions(json.loads(args.versions.read_text(encoding="utf-8")))
        policy = Policy(args.keep_dev, args.min_age_days, args.max_delete_share, args.max_delete_count)
        now = (args.now or datetime.now(UTC)).astimezone(UTC)
        if args.command == "kept":
            print("\n".join(kept_by_rules(versions, policy, now)))
            return 0
        result = plan(versions, load_children(args.manifests), policy, now)
    except (OSError, ValueError, KeyError, TypeError, PlanError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.output.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    report = markdown(result)
    print(report, end="")
    write_summary(report)
    write_outputs(deletions=str(len(result.delete)), aborted="true" if result.aborted else "false")
    return 1 if result.aborted else 0


def _execute_command(args: argparse.Namespace) -> int:
    planned = load_plan(args.plan)
    if planned.aborted:
        print(f"error: the plan was aborted ({planned.aborted}); nothing deleted", file=sys.stderr)
        return 1
    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
    if not token:
        print("error: GITHUB_TOKEN is not set", file=sys.stderr)
        return 2
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    with httpx.Client(base_url=args.api_url, headers=headers, timeout=30) as client:
        outcome = execute(planned.delete, client, args.package_path)
    summary = (
        f"### Registry clean-up: deleted {len(outcome.deleted)}, already gone {len(outcome.already_gone)}, "
        f"failed {len(outcome.failed)}, kept {len(planned.keep)}\n"
    )
    for version_id, why in outcome.failed.items():
        print(f"error: version {version_id}: {why}", file=sys.stderr)
    print(summary, end="")
    write_summary(summary)
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
