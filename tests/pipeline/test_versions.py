"""Semantic version parsing and precedence (SemVer 2.0 §11), and the tag shapes the pipeline protects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from versions import Version, is_moving_tag, is_semver_tag

identifiers = st.one_of(
    st.integers(min_value=0, max_value=10_000).map(str),
    st.from_regex(r"[0-9]*[A-Za-z-][0-9A-Za-z-]{0,6}", fullmatch=True),
)
versions = st.builds(
    Version,
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(0, 50),
    st.lists(identifiers, max_size=3).map(tuple),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3", Version(1, 2, 3)),
        ("v1.2.3", Version(1, 2, 3)),
        ("0.0.0", Version(0, 0, 0)),
        ("1.0.0-rc.1", Version(1, 0, 0, ("rc", "1"))),
        ("1.0.0-0.3.7", Version(1, 0, 0, ("0", "3", "7"))),
        ("1.0.0-x-y-z.--", Version(1, 0, 0, ("x-y-z", "--"))),
    ],
)
def test_parses_versions_with_optional_v(text: str, expected: Version) -> None:
    assert Version.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "latest", "1", "1.2", "01.2.3", "1.02.3", "1.2.3-01", "1.2.3+build", "1.2.3-", "V1.2.3", "1.2.3.4", "١.٢.٣"],
)
def test_rejects_what_is_not_a_release_version(text: str) -> None:
    assert Version.parse(text) is None


def test_precedence_follows_the_semver_specification_example() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11"]
    ordered += ["1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"]
    parsed = [Version.parse(text) for text in ordered]
    assert all(version is not None for version in parsed)
    shuffled = parsed[1::2] + parsed[::2]
    assert sorted(shuffled) == parsed  # type: ignore[type-var]


def test_comparing_with_something_else_is_not_supported() -> None:
    with pytest.raises(TypeError):
        _ = Version(1, 0, 0) < "1.0.0"


@given(versions)
def test_text_round_trips(version: Version) -> None:
    assert Version.parse(str(version)) == version
    assert Version.parse(f"v{version}") == version


@given(versions, versions)
def test_order_is_total_and_consistent_with_equality(a: Version, b: Version) -> None:
    assert (a < b) + (b < a) + (a == b) == 1


@given(versions)
def test_a_release_outranks_its_prereleases(version: Version) -> None:
    release = Version(version.major, version.minor, version.patch)
    assert version <= release
    assert version.bump("patch") >= release


@pytest.mark.parametrize(
    ("start", "part", "expected"),
    [
        ("1.4.2", "patch", "1.4.3"),
        ("1.4.2", "minor", "1.5.0"),
        ("1.4.2", "major", "2.0.0"),
        ("1.5.0-rc.1", "patch", "1.5.0"),
        ("0.9.9", "major", "1.0.0"),
    ],
)
def test_bump(start: str, part: str, expected: str) -> None:
    version = Version.parse(start)
    assert version is not None
    assert str(version.bump(part)) == expected  # type: ignore[arg-type]


def test_tag_shapes() -> None:
    assert all(map(is_semver_tag, ["1.4.2", "v1.4.2", "1.4.2-rc.1"]))
    assert not any(map(is_semver_tag, ["1.4", "latest", "sha-abc", "main"]))
    assert all(map(is_moving_tag, ["1", "v1", "1.4", "v1.4", "0"]))
    assert not any(map(is_moving_tag, ["1.4.2", "latest", "01", "v", "main"]))
