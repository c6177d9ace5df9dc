"""The next release version, from the list of GitHub releases and a bump.

Every release's tag is parsed as a semantic version; drafts, pre-releases and tags that are not versions do
not count as the base (the API's "latest" ordering is never trusted: the highest stable version is). The bump
is given, or derived from the conventional-commit messages since that release: a breaking change → major,
`feat` → minor, anything else → patch. A version that already exists as any release or tag is refused.

    gh api --paginate --slurp repos/OWNER/REPO/releases > releases.json
    python .github/scripts/next_version.py --releases releases.json --bump auto
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, get_args

from actions_io import api_items, write_outputs
from consistency import ConsistencyError, app_version
from versions import Bump, Version

_HEADER = re.compile(r"^(?P<type>[A-Za-z]+)(?:\([^)]*\))?(?P<breaking>!)?:\s")
_BREAKING_FOOTER = re.compile(r"^BREAKING[ -]CHANGE:\s", re.M)


class VersionError(Exception):
    """The next version cannot be decided; the message says why."""


def load_releases(text: str) -> list[dict[str, Any]]:
    """The releases API answer: one array, or `gh api --paginate --slurp`'s array of pages."""
    data = json.loads(text)
    try:
        releases = api_items(data, "releases")
    except ValueError as error:
        raise VersionError(str(error)) from None
    if not all(isinstance(release, dict) for release in releases):
        raise VersionError("every release must be a JSON object")
    return releases


def _tag_version(release: dict[str, Any]) -> Version | None:
    tag = release.get("tag_name")
    return Version.parse(tag) if isinstance(tag, str) else None


def stable_releases(releases: Iterable[dict[str, Any]]) -> dict[Version, str]:
    """Published, non-pre-release releases whose tag is a stable version, mapped to their tag name."""
    stable: dict[Version, str] = {}
    for release in releases:
        version = _tag_version(release)
        if version is None or version.is_prerelease or release.get("draft") or release.get("prerelease"):
            continue
        stable[version] = str(release["tag_name"])
    return stable


def existing_versions(releases: Iterable[dict[str, Any]]) -> set[Version]:
    """Every version a release already claims, drafts and pre-releases included."""
    return {version for release in releases if (version := _tag_version(release)) is not None}


def bump_from_commits(messages: Iterable[str]) -> Bump:
    """Conventional Commits: `type!:` or a BREAKING CHANGE footer → major; `feat` → minor; otherwise patch."""
    bump: Bump = "patch"
    for message in messages:
        header = _HEADER.match(message.strip())
        if (header and header["breaking"]) or _BREAKING_FOOTER.search(message):
            return "major"
        if header and header["type"].lower() == "feat":
            bump = "minor"
    return bump


def next_version(releases: Sequence[dict[str, Any]], bump: Bump, initial: Version) -> Version:
    """Bump the highest stable release; with no release yet, the first one is `initial` (the app's version)."""
    stable = stable_releases(releases)
    candidate = max(stable).bump(bump) if stable else initial
    if candidate in existing_versions(releases):
        raise VersionError(f"version {candidate} already exists as a release (draft or published); bump further")
    return candidate


def commit_messages(repo: Path, since_tag: str | None) -> list[str]:
    """Full messages of the commits after `since_tag` (all history when there is no release yet)."""
    revisions = f"{since_tag}..HEAD" if since_tag else "HEAD"
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "-z", "--format=%B", revisions, "--"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [message for message in log.split("\0") if message.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="next_version.py", description=__doc__.split("\n")[0])
    parser.add_argument("--releases", type=Path, required=True, help="JSON from the releases API")
    parser.add_argument("--bump", choices=["auto", *get_args(Bump)], default="auto")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (git history, app version)")
    args = parser.parse_args(argv)

    try:
        releases = load_releases(args.releases.read_text(encoding="utf-8"))
        initial = Version.parse(app_version(args.root))
        if initial is None:
            raise VersionError("app/__init__.py: __version__ is not a semantic version")
        stable = stable_releases(releases)
        base_tag = stable[max(stable)] if stable else None
        bump: Bump = args.bump
        if args.bump == "auto":
            bump = bump_from_commits(commit_messages(args.root, base_tag))
        version = next_version(releases, bump, initial)
    except (OSError, ValueError, VersionError, ConsistencyError, subprocess.CalledProcessError) as error:
        detail = error.stderr.strip() if isinstance(error, subprocess.CalledProcessError) else str(error)
        print(f"error: {detail}", file=sys.stderr)
        return 1
    print(version)
    print(f"base: {base_tag or 'no release yet'}; bump: {bump}", file=sys.stderr)
    write_outputs(version=str(version), tag=f"v{version}", bump=bump)
    return 0


if __name__ == "__main__":
    sys.exit(main())
