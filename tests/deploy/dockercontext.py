"""List the files `docker build .` would send as its context, applying .dockerignore the way Docker does.

Mirrors moby/patternmatcher (the matcher BuildKit uses) and its ignorefile reader: patterns are cleaned
like Go's filepath.Clean with a leading `/` dropped, `*` and `?` never cross `/`, `**` crosses any number
of directories, a pattern that matches a parent directory matches everything under it, `!` re-includes,
and the last matching line wins.

    python -m tests.deploy.dockercontext [CONTEXT_DIR]   # prints the context's files, one per line
"""

from __future__ import annotations

import os
import posixpath
import re
import sys
from dataclasses import dataclass
from pathlib import Path

_REGEX_SPECIAL = set(".+()|{}$")


def clean(path: str) -> str:
    """Go's filepath.Clean for slash-separated paths (posixpath.normpath keeps a leading `//`; Go does not)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool

    def matches(self, path: str) -> bool:
        kind, argument = _compile(self.text)
        if kind == "exact":
            return path == argument
        if kind == "prefix":
            return path.startswith(argument)
        if kind == "suffix":
            return path.endswith(argument) or (argument.startswith("/") and path == argument[1:])
        return re.fullmatch(argument, path, flags=re.DOTALL) is not None

    def matches_or_parent_matches(self, path: str) -> bool:
        if self.matches(path):
            return True
        parent = posixpath.dirname(path)
        if not parent:
            return False
        parts = parent.split("/")
        return any(self.matches("/".join(parts[: i + 1])) for i in range(len(parts)))


def _compile(pattern: str) -> tuple[str, str]:  # noqa: PLR0912 - moby's Pattern.compile, branch for branch
    """moby's Pattern.compile: ('exact'|'prefix'|'suffix', literal) or ('regex', expression)."""
    regex = ""
    kind = "exact"
    i = position = 0
    while position < len(pattern):
        char = pattern[position]
        position += 1
        if char == "*":
            if position < len(pattern) and pattern[position] == "*":
                position += 1
                if position < len(pattern) and pattern[position] == "/":
                    position += 1  # `**/` is `**`
                if position == len(pattern):
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex += ".*"
                        kind = "regex"
                else:
                    regex += "(.*/)?"
                    kind = "regex"
                if i == 0:
                    kind = "suffix"
            else:
                regex += "[^/]*"
                kind = "regex"
        elif char == "?":
            regex += "[^/]"
            kind = "regex"
        elif char in _REGEX_SPECIAL:
            regex += "\\" + char
        elif char == "\\":
            if position < len(pattern):
                regex += "\\" + pattern[position]
                position += 1
                kind = "regex"
            else:
                regex += "\\\\"
        elif char in "[]":
            regex += char
            kind = "regex"
        else:
            regex += char
        i += 1
    if kind == "prefix":
        return kind, pattern[:-2]
    if kind == "suffix":
        return kind, pattern[2:]
    if kind == "exact":
        return kind, pattern
    return kind, regex


def read_patterns(text: str) -> list[Pattern]:
    """moby's ignorefile.ReadAll, then patternmatcher.New: comments only at the start of a line, whitespace
    trimmed, paths cleaned, a leading `/` dropped, and `!` read again by New (so `/!x` is an exclusion too)."""
    lines = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        lines.append("!" + line if invert else line)

    patterns = []
    for line in lines:
        cleaned = clean(line.strip())
        exclusion = cleaned.startswith("!")
        if cleaned == "!":
            raise ValueError("illegal exclusion pattern: '!'")
        patterns.append(Pattern(cleaned[1:] if exclusion else cleaned, exclusion))
    return patterns


def is_excluded(path: str, patterns: list[Pattern]) -> bool:
    """moby's MatchesOrParentMatches: the last pattern that matches the path or one of its parents decides."""
    path = clean(path)
    excluded = False
    for pattern in patterns:
        if pattern.exclusion != excluded:
            continue  # an include can only flip an excluded path, an exclusion only an included one
        if pattern.matches_or_parent_matches(path):
            excluded = not pattern.exclusion
    return excluded


def list_context(root: Path) -> list[str]:
    """Every regular file under `root` that the build context would contain, as sorted relative paths."""
    ignore = root / ".dockerignore"
    patterns = read_patterns(ignore.read_text(encoding="utf-8")) if ignore.exists() else []
    files = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            relative = Path(directory, name).relative_to(root).as_posix()
            if not is_excluded(relative, patterns):
                files.append(relative)
    return sorted(files)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else ".")
    for path in list_context(root):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
