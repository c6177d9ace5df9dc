"""The image tags a release gets, given every version released so far.

- The full version is always tagged, with and without `v`: `1.4.2`, `v1.4.2`. These never move.
- The minor tag (`1.4`, `v1.4`) follows the newest stable release of its minor line, the major tag (`1`, `v1`)
  the newest of its major line (never a bare `0`: 0.x promises no compatibility), `latest` the newest overall.
  So a backport 1.3.9 after 1.4.2 moves `1.3` only.
- A pre-release gets only its own full tags.

    python .github/scripts/tags.py --version 1.4.2 --releases releases.json --image ghcr.io/org/airia-test-pod
    python .github/scripts/tags.py --version 1.4.2 --releases releases.json --digest sha256:... --existing tags.json
      (exit 1 when a full-version tag already points at another digest)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from actions_io import write_outputs
from next_version import VersionError, load_releases, stable_releases
from versions import Version, is_semver_tag


def image_tags(version: Version, released: Iterable[Version]) -> list[str]:
    """Tags for `version`, newest-line rules applied against `released` (which may or may not include it)."""
    full = [str(version), f"v{version}"]
    if version.is_prerelease:
        return full
    stable = {v for v in released if not v.is_prerelease} | {version}
    tags = list(full)
    if version == max(v for v in stable if (v.major, v.minor) == (version.major, version.minor)):
        tags += [f"{version.major}.{version.minor}", f"v{version.major}.{version.minor}"]
    if version.major > 0 and version == max(v for v in stable if v.major == version.major):
        tags += [str(version.major), f"v{version.major}"]
    if version == max(stable):
        tags.append("latest")
    return tags


def conflicts(tags: Iterable[str], digest: str, existing: Mapping[str, str | None]) -> list[str]:
    """Full-version tags that already point at another digest: pushing would reassign a release."""
    return [
        f"{tag} already points at {existing[tag]}, not {digest}"
        for tag in tags
        if is_semver_tag(tag) and existing.get(tag) not in (None, digest)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tags.py", description=__doc__.split("\n")[0])
    parser.add_argument("--version", required=True, help="the version being released")
    parser.add_argument("--releases", type=Path, required=True, help="JSON from the releases API")
    parser.add_argument("--image", help="prefix each tag with IMAGE: (full references)")
    parser.add_argument("--digest", help="with --existing: the digest the release's tags must point at")
    parser.add_argument("--existing", type=Path, help="JSON {tag: digest or null} read from the registry")
    args = parser.parse_args(argv)

    version = Version.parse(args.version)
    if version is None:
        print(f"error: {args.version!r} is not a semantic version", file=sys.stderr)
        return 2
    try:
        released = stable_releases(load_releases(args.releases.read_text(encoding="utf-8")))
        existing = json.loads(args.existing.read_text(encoding="utf-8")) if args.existing else {}
    except (OSError, ValueError, VersionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tags = image_tags(version, released)
    problems = conflicts(tags, args.digest, existing) if args.digest else []
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    references = [f"{args.image}:{tag}" for tag in tags] if args.image else tags
    print("\n".join(references))
    write_outputs(tags="\n".join(references))
    return 0


if __name__ == "__main__":
    sys.exit(main())
