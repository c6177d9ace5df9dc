"""Version consistency: `app/__init__.py` is the single source of the version.

The chart's `version` and `appVersion` must equal it, `values.yaml` `image.tag` must be "" (meaning
"use appVersion") or exactly it, and the examples shipped with the chart (`examples/**/*.yaml`) must run the
product's image at exactly it. `check` names every mismatch; `set-version` rewrites all of them in one step,
editing the lines in place so comments and layout survive.

    python .github/scripts/consistency.py check [--expect 1.4.2]
    python .github/scripts/consistency.py set-version 1.4.2
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from actions_io import write_outputs
from versions import Version

APP_FILE = "app/__init__.py"
CHART_FILE = "helm/airia-test-pod/Chart.yaml"
VALUES_FILE = "helm/airia-test-pod/values.yaml"
EXAMPLES_DIR = "helm/airia-test-pod/examples"

_APP_VERSION = re.compile(r"""^(__version__\s*=\s*)(["'])(?P<value>[^"'\n]*)(["'])""", re.M)
# the product's image in an example manifest: `image: <registry>/airia-test-pod:<tag>`
_EXAMPLE_IMAGE = re.compile(r"""^\s*-?\s*image:\s*["']?[^\s"'#]*/airia-test-pod:(?P<value>[^\s"'#@]*)""", re.M)


def _top_level_key(key: str) -> re.Pattern[str]:
    # `key: value`, `key: "value"` or `key: 'value'` at column 0, with an optional trailing comment
    return re.compile(rf"""^({key}:[ \t]*)(["']?)(?P<value>[^"'\s#]*)(["']?)""", re.M)


class ConsistencyError(Exception):
    """A file is missing or unreadable; the message names it."""


@dataclass(frozen=True)
class Found:
    app: str
    chart_version: str
    chart_app_version: str
    image_tag: str | None  # "" means "use appVersion"; None means the key is missing
    example_tags: tuple[tuple[str, str], ...] = ()  # (file, tag) of every product image an example runs


def _read(root: Path, relative: str) -> str:
    try:
        return (root / relative).read_text(encoding="utf-8")
    except OSError as error:
        raise ConsistencyError(f"{relative}: cannot read ({error.strerror})") from None


def _yaml(root: Path, relative: str) -> dict[str, object]:
    try:
        data = yaml.safe_load(_read(root, relative))
    except yaml.YAMLError as error:
        raise ConsistencyError(f"{relative}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise ConsistencyError(f"{relative}: expected a mapping at the top level")
    return data


def app_version(root: Path) -> str:
    match = _APP_VERSION.search(_read(root, APP_FILE))
    if match is None:
        raise ConsistencyError(f'{APP_FILE}: no `__version__ = "..."` line')
    return match["value"]


def read(root: Path) -> Found:
    chart = _yaml(root, CHART_FILE)
    values = _yaml(root, VALUES_FILE)
    image = values.get("image")
    tag = image.get("tag") if isinstance(image, dict) else None
    return Found(
        app=app_version(root),
        chart_version=str(chart.get("version", "")),
        chart_app_version=str(chart.get("appVersion", "")),
        image_tag=None if tag is None else str(tag),
        example_tags=tuple(
            (relative, match["value"])
            for relative in _examples(root)
            for match in _EXAMPLE_IMAGE.finditer(_read(root, relative))
        ),
    )


def _examples(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in (root / EXAMPLES_DIR).rglob("*.yaml"))


def mismatches(found: Found, expected: str | None = None) -> list[str]:
    """Every disagreement, each naming the file, the field and both values."""
    problems = []
    if Version.parse(found.app) is None or found.app.startswith("v"):
        problems.append(f"{APP_FILE}: __version__ {found.app!r} is not a semantic version like 1.4.2")
    if expected is not None and found.app != expected:
        problems.append(f"{APP_FILE}: __version__ is {found.app!r} but the release is {expected!r}")
    if found.chart_version != found.app:
        problems.append(f"{CHART_FILE}: version is {found.chart_version!r}, expected {found.app!r}")
    if found.chart_app_version != found.app:
        problems.append(f"{CHART_FILE}: appVersion is {found.chart_app_version!r}, expected {found.app!r}")
    if found.image_tag not in ("", found.app):
        problems.append(
            f'{VALUES_FILE}: image.tag is {found.image_tag!r}, expected "" (use appVersion) or {found.app!r}'
        )
    for relative, tag in found.example_tags:
        if tag != found.app:
            problems.append(f"{relative}: runs airia-test-pod:{tag}, expected {found.app!r}")
    return problems


def _replace_once(text: str, pattern: re.Pattern[str], value: str, where: str) -> str:
    matches = list(pattern.finditer(text))
    if len(matches) != 1:
        raise ConsistencyError(f"{where}: expected exactly one line to update, found {len(matches)}")
    match = matches[0]
    return text[: match.start("value")] + value + text[match.end("value") :]


def _replace_all(text: str, pattern: re.Pattern[str], value: str) -> str:
    return pattern.sub(lambda m: m[0][: m.start("value") - m.start()] + value, text)


def _replace_image_tag(text: str, version: str) -> str:
    """Rewrite `tag:` directly under the top-level `image:` block, only when it pins a version."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"^image:[ \t]*(#.*)?$", line.rstrip("\n"))), None)
    if start is None:
        raise ConsistencyError(f"{VALUES_FILE}: no top-level `image:` block")
    child_indent: str | None = None
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if not indent:
            break  # the block ended without a tag
        child_indent = child_indent if child_indent is not None else indent
        if indent != child_indent:
            continue
        match = re.match(r"""^(\s+tag:[ \t]*)(["']?)(?P<value>[^"'\s#]*)(["']?)""", line)
        if match is None:
            continue
        if match["value"] == "":
            return text  # "" means "use appVersion": nothing to pin
        lines[i] = line[: match.start("value")] + version + line[match.end("value") :]
        return "".join(lines)
    raise ConsistencyError(f"{VALUES_FILE}: no `tag:` under `image:`")


def set_version(root: Path, version: str) -> None:
    """Write `version` into every place that carries it, then prove the tree is consistent."""
    if Version.parse(version) is None or version.startswith("v"):
        raise ConsistencyError(f"{version!r} is not a semantic version like 1.4.2")
    edits = {
        APP_FILE: _replace_once(_read(root, APP_FILE), _APP_VERSION, version, APP_FILE),
        CHART_FILE: _replace_once(
            _replace_once(_read(root, CHART_FILE), _top_level_key("version"), version, f"{CHART_FILE} version"),
            _top_level_key("appVersion"),
            version,
            f"{CHART_FILE} appVersion",
        ),
        VALUES_FILE: _replace_image_tag(_read(root, VALUES_FILE), version),
        **{relative: _replace_all(_read(root, relative), _EXAMPLE_IMAGE, version) for relative in _examples(root)},
    }
    for relative, text in edits.items():  # every edit was computed before the first write
        (root / relative).write_text(text, encoding="utf-8")
    problems = mismatches(read(root), version)
    if problems:
        raise ConsistencyError("after set-version: " + "; ".join(problems))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="consistency.py", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="exit 1 naming each mismatch")
    check.add_argument("--expect", metavar="VERSION", help="the version being released (e.g. from the tag)")
    write = commands.add_parser("set-version", help="write VERSION everywhere")
    write.add_argument("version")
    args = parser.parse_args(argv)

    try:
        if args.command == "set-version":
            set_version(args.root, args.version)
            print(f"version set to {args.version} in {APP_FILE}, {CHART_FILE}, {VALUES_FILE} and {EXAMPLES_DIR}")
            return 0
        expected = args.expect.removeprefix("v") if args.expect else None
        found = read(args.root)
        problems = mismatches(found, expected)
    except ConsistencyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"mismatch: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"consistent: {found.app}")
    write_outputs(version=found.app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
