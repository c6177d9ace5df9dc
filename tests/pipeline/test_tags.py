"""Image tag sets: newest-line rules, backports, pre-releases, 0.x, and the never-reassign property."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tags
from hypothesis import given
from hypothesis import strategies as st
from tags import conflicts, image_tags
from versions import Version


def v(text: str) -> Version:
    version = Version.parse(text)
    assert version is not None
    return version


def test_newest_stable_release_gets_every_tag() -> None:
    released = [v("1.3.9"), v("1.4.1"), v("0.9.0")]
    assert image_tags(v("1.4.2"), released) == ["1.4.2", "v1.4.2", "1.4", "v1.4", "1", "v1", "latest"]


def test_backport_moves_only_its_minor_line() -> None:
    released = [v("1.3.8"), v("1.4.2")]
    assert image_tags(v("1.3.9"), released) == ["1.3.9", "v1.3.9", "1.3", "v1.3"]


def test_backport_to_an_old_minor_line_moves_nothing() -> None:
    released = [v("1.3.9"), v("1.3.10"), v("1.4.2")]
    assert image_tags(v("1.3.9"), released) == ["1.3.9", "v1.3.9"]


def test_newest_of_an_older_major_moves_its_major_but_not_latest() -> None:
    assert image_tags(v("1.9.0"), [v("1.8.0"), v("2.0.0")]) == ["1.9.0", "v1.9.0", "1.9", "v1.9", "1", "v1"]


def test_prerelease_gets_only_its_own_tags() -> None:
    assert image_tags(v("2.0.0-rc.1"), [v("1.4.2")]) == ["2.0.0-rc.1", "v2.0.0-rc.1"]


def test_zero_major_never_gets_a_bare_zero() -> None:
    assert image_tags(v("0.4.1"), [v("0.4.0")]) == ["0.4.1", "v0.4.1", "0.4", "v0.4", "latest"]


def test_prereleases_in_history_do_not_hold_back_a_release() -> None:
    assert "latest" in image_tags(v("1.4.2"), [v("1.5.0-rc.1")])


def test_conflicts_name_full_version_tags_pointing_elsewhere() -> None:
    existing = {"1.4.2": "sha256:old", "v1.4.2": "sha256:new", "latest": "sha256:old", "1.4": None}
    assert conflicts(["1.4.2", "v1.4.2", "latest", "1.4"], "sha256:new", existing) == [
        "1.4.2 already points at sha256:old, not sha256:new"
    ]


# Property: releasing any set of versions in any order never reassigns a full version tag, `latest` always
# names the newest stable release, and each moving tag the newest release of its line.
stable_versions = st.builds(Version, st.integers(0, 3), st.integers(0, 3), st.integers(0, 3))
any_versions = st.one_of(
    stable_versions, st.builds(Version, st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.just(("rc", "1")))
)


@given(st.lists(any_versions, unique=True, max_size=12))
def test_release_sequences_never_reassign_a_version_tag(sequence: list[Version]) -> None:
    pointer: dict[str, Version] = {}
    released: list[Version] = []
    for version in sequence:
        for tag in image_tags(version, released):
            if Version.parse(tag) is not None:
                assert tag not in pointer, f"{tag} reassigned from {pointer[tag]} to {version}"
            pointer[tag] = version
        released.append(version)
    stable = [version for version in released if not version.is_prerelease]
    if stable:
        assert pointer["latest"] == max(stable)
    for version in stable:
        minor = f"{version.major}.{version.minor}"
        assert pointer[minor] == max(s for s in stable if (s.major, s.minor) == (version.major, version.minor))
        if version.major:
            assert pointer[str(version.major)] == max(s for s in stable if s.major == version.major)
    assert "0" not in pointer and "v0" not in pointer


def _releases(tmp_path: Path, *tag_names: str) -> Path:
    path = tmp_path / "releases.json"
    path.write_text(json.dumps([{"tag_name": t, "draft": False, "prerelease": False} for t in tag_names]))
    return path


def test_cli_prints_full_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = tags.main(["--version", "1.4.2", "--releases", str(_releases(tmp_path, "v1.4.1")), "--image", "ghcr.io/o/p"])
    assert code == 0
    assert capsys.readouterr().out.split() == [
        f"ghcr.io/o/p:{t}" for t in ["1.4.2", "v1.4.2", "1.4", "v1.4", "1", "v1", "latest"]
    ]


def test_cli_fails_when_an_existing_version_tag_points_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "existing.json"
    existing.write_text(json.dumps({"1.4.2": "sha256:aaa", "latest": "sha256:bbb"}))
    args = ["--version", "1.4.2", "--releases", str(_releases(tmp_path)), "--digest", "sha256:ccc"]
    assert tags.main([*args, "--existing", str(existing)]) == 1
    assert "1.4.2 already points at sha256:aaa" in capsys.readouterr().err
    existing.write_text(json.dumps({"1.4.2": "sha256:ccc", "latest": "sha256:bbb"}))
    assert tags.main([*args, "--existing", str(existing)]) == 0  # a re-run: same digest, moving tags may move


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tags.main(["--version", "latest", "--releases", str(_releases(tmp_path))]) == 2
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert tags.main(["--version", "1.0.0", "--releases", str(broken)]) == 2
    assert "error:" in capsys.readouterr().err
