"""Semantic versions as the release pipeline uses them: parsing, SemVer 2.0 precedence, tag shapes.

Build metadata (`+build`) is rejected: it has no precedence and `+` is not allowed in an image tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering
from typing import Literal

Bump = Literal["major", "minor", "patch"]

_NUMBER = r"0|[1-9]\d*"
_IDENTIFIER = r"0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*"
_SEMVER = re.compile(
    rf"^v?(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<prerelease>(?:{_IDENTIFIER})(?:\.(?:{_IDENTIFIER}))*))?$",
    re.ASCII,
)
_MOVING = re.compile(rf"^v?(?:{_NUMBER})(?:\.(?:{_NUMBER}))?$", re.ASCII)


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """`1.2.3`, `v1.2.3` or `1.2.3-rc.1`; anything else (garbage, build metadata, leading zeros) is None."""
        match = _SEMVER.match(text.strip())
        if match is None:
            return None
        prerelease = match["prerelease"]
        return cls(
            int(match["major"]),
            int(match["minor"]),
            int(match["patch"]),
            tuple(prerelease.split(".")) if prerelease else (),
        )

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def bump(self, part: Bump) -> Version:
        if part == "major":
            return Version(self.major + 1, 0, 0)
        if part == "minor":
            return Version(self.major, self.minor + 1, 0)
        if self.is_prerelease:  # 1.3.0-rc.1 → 1.3.0: a patch bump of a pre-release is its release
            return Version(self.major, self.minor, self.patch)
        return Version(self.major, self.minor, self.patch + 1)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # SemVer §11: a release outranks its pre-releases; numeric identifiers sort numerically and below
        # alphanumeric ones; a longer identifier list wins when all shared identifiers are equal.
        identifiers = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, identifiers)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core


def is_semver_tag(tag: str) -> bool:
    """A full version tag (`1.2.3`, `v1.2.3-rc.1`): once pushed it must never point anywhere else."""
    return Version.parse(tag) is not None


def is_moving_tag(tag: str) -> bool:
    """A major or minor tag (`1`, `v1`, `1.4`, `v1.4`) that follows the newest release of its line."""
    return _MOVING.match(tag) is not None
