"""Next version: parse every release tag, ignore drafts/pre-releases/garbage, bump from conventional commits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import next_version
import pytest
from hypothesis import given
from hypothesis import strategies as st
from next_version import VersionError, bump_from_commits, load_releases, stable_releases
from versions import Version

INITIAL = Version(0, 1, 0)


def release(tag: str, *, draft: bool = False, prerelease: bool = False) -> dict[str, Any]:
    return {"tag_name": tag, "draft": draft, "prerelease": prerelease, "name": f"Release {tag}"}


def test_highest_stable_release_is_the_base_whatever_the_api_order() -> None:
    releases = [release("v1.10.0"), release("v1.9.3"), release("v1.2.0")]
    assert next_version.next_version(list(reversed(releases)), "patch", INITIAL) == Version(1, 10, 1)


def test_drafts_prereleases_and_garbage_are_not_a_base() -> None:
    releases = [
        release("v1.4.2"),
        release("v9.0.0", draft=True),
        release("v3.0.0", prerelease=True),
        release("v2.0.0-rc.1"),
        release("nightly"),
        release("release-2024"),
        {"tag_name": None},
        {"name": "no tag at all"},
    ]
    assert next_version.next_version(releases, "minor", INITIAL) == Version(1, 5, 0)


def test_first_release_is_the_app_version() -> None:
    assert next_version.next_version([release("garbage")], "major", Version(0, 3, 0)) == Version(0, 3, 0)


def test_refuses_a_version_that_already_exists_as_a_draft_or_prerelease() -> None:
    releases = [release("v1.4.2"), release("v1.4.3", draft=True)]
    with pytest.raises(VersionError, match=r"1\.4\.3 already exists"):
        next_version.next_version(releases, "patch", INITIAL)
    with pytest.raises(VersionError, match="already exists"):
        next_version.next_version([release("0.1.0", prerelease=True)], "patch", INITIAL)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], "patch"),
        (["fix: handle a closed port"], "patch"),
        (["docs: explain values", "chore(deps): bump httpx"], "patch"),
        (["fix: x", "feat(api): add report download"], "minor"),
        (["Feat: capitalised type still counts"], "minor"),
        (["feat!: drop the v1 API"], "major"),
        (["refactor(runner)!: new result model"], "major"),
        (["feat: new thing\n\nBREAKING CHANGE: config keys renamed"], "major"),
        (["fix: y\n\nBREAKING-CHANGE: exit codes changed"], "major"),
        (["featured: not a type", "feat no colon"], "patch"),
        (["fix: mentions BREAKING CHANGE: inline only"], "patch"),
    ],
)
def test_bump_from_conventional_commits(messages: list[str], expected: str) -> None:
    assert bump_from_commits(messages) == expected


@given(st.lists(st.sampled_from(["fix: a", "feat: b", "chore: c", "feat!: d", "docs: e"]), max_size=8))
def test_bump_is_the_strongest_change_whatever_the_order(messages: list[str]) -> None:
    expected = "major" if "feat!: d" in messages else "minor" if "feat: b" in messages else "patch"
    assert bump_from_commits(messages) == expected
    assert bump_from_commits(reversed(messages)) == expected


def test_load_releases_accepts_one_array_or_slurped_pages() -> None:
    page = [release("v1.0.0"), release("v1.1.0")]
    assert load_releases(json.dumps(page)) == page
    assert load_releases(json.dumps([page, [release("v2.0.0")]])) == [*page, release("v2.0.0")]
    assert load_releases("[]") == []
    with pytest.raises(VersionError):
        load_releases('{"message": "Not Found"}')
    with pytest.raises(VersionError):
        load_releases('["v1.0.0"]')


def test_stable_releases_keep_the_tag_spelling() -> None:
    assert stable_releases([release("1.0.0"), release("v1.1.0")]) == {
        Version(1, 0, 0): "1.0.0",
        Version(1, 1, 0): "v1.1.0",
    }


# The CLI against a real git repository: the bump comes from the commits after the last release's tag.
def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text('__version__ = "1.4.2"\n')
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "feat!: first")
    git(root, "tag", "v1.4.2")
    return root


def commit(repo: Path, message: str) -> None:
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", message)


def run_cli(repo: Path, releases: list[dict[str, Any]], bump: str, output: Path) -> int:
    path = repo.parent / "releases.json"
    path.write_text(json.dumps(releases))
    return next_version.main(["--releases", str(path), "--bump", bump, "--root", str(repo)])


def test_cli_derives_the_bump_from_commits_since_the_last_release(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    commit(repo, "fix: a")
    commit(repo, "feat(cli): b")
    assert run_cli(repo, [release("v1.4.2")], "auto", output) == 0
    assert capsys.readouterr().out.strip() == "1.5.0"
    assert output.read_text() == "version=1.5.0\ntag=v1.5.0\nbump=minor\n"


def test_cli_explicit_bump_and_first_release(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = repo.parent / "unused"
    assert run_cli(repo, [release("v1.4.2")], "major", output) == 0
    assert capsys.readouterr().out.strip() == "2.0.0"
    assert run_cli(repo, [], "auto", output) == 0  # no release yet: the app's own version
    assert capsys.readouterr().out.strip() == "1.4.2"


def test_cli_reports_errors_without_a_traceback(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = repo.parent / "unused"
    assert run_cli(repo, [release("v9.9.9")], "auto", output) == 1  # the tag does not exist in git
    assert "error:" in capsys.readouterr().err
    assert run_cli(repo, [release("v1.4.2"), release("v1.4.3", draft=True)], "patch", output) == 1
    assert "already exists" in capsys.readouterr().err
    (repo / "app" / "__init__.py").write_text('__version__ = "one"\n')
    assert run_cli(repo, [], "patch", output) == 1
    assert "not a semantic version" in capsys.readouterr().err
