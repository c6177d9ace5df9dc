"""pins.py verify against real git repositories served from a local directory (the layout of https://github.com)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pins
import pytest
import yaml

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
    "PATH": "/usr/bin:/bin",
}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def server(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """owner/act: v1.0.0 (lightweight, node20), v2.0.0 (annotated, node24, plus sub/action.yaml composite)."""
    repo = tmp_path / "server" / "owner" / "act"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    old = commit(repo, {"action.yml": "runs:\n  using: node20\n  main: index.js\n"}, "node20")
    git(repo, "tag", "v1.0.0")
    new = commit(
        repo,
        {
            "action.yml": "runs:\n  using: 'node24'\n  main: index.js\n",
            "sub/action.yaml": "runs:\n  using: composite\n",
        },
        "node24",
    )
    git(repo, "tag", "-a", "v2.0.0", "-m", "v2.0.0")
    return tmp_path / "server", {"old": old, "new": new}


def pin(action: str, version: str, sha: str, runs: str = "node24") -> pins.ActionPin:
    return pins.ActionPin(action, version, sha, runs)


def test_a_right_pin_behind_an_annotated_tag_passes(server: tuple[Path, dict[str, str]]) -> None:
    root, shas = server
    assert pins.verify(pin("owner/act", "v2.0.0", shas["new"]), str(root)) == []


def test_an_action_in_a_subdirectory_is_read_from_its_own_metadata(server: tuple[Path, dict[str, str]]) -> None:
    root, shas = server
    assert pins.verify(pin("owner/act/sub", "v2.0.0", shas["new"], "composite"), str(root)) == []


def test_a_dead_runtime_fails_even_when_recorded_truthfully(server: tuple[Path, dict[str, str]]) -> None:
    root, shas = server
    problems = pins.verify(pin("owner/act", "v1.0.0", shas["old"], "node20"), str(root))
    assert problems == ["owner/act: runs.using node20 is not a runtime GitHub's runners still run"]


def test_a_runtime_other_than_the_recorded_one_fails(server: tuple[Path, dict[str, str]]) -> None:
    root, shas = server
    problems = pins.verify(pin("owner/act", "v1.0.0", shas["old"], "node24"), str(root))
    assert problems[0] == f"owner/act: action.yml at {shas['old']} declares runs.using node20, the record node24"


def test_a_sha_the_tag_does_not_name_fails(server: tuple[Path, dict[str, str]]) -> None:
    """A moved tag (or a SHA copied from elsewhere) is caught before anything is fetched."""
    root, shas = server
    problems = pins.verify(pin("owner/act", "v2.0.0", shas["old"]), str(root))
    assert problems == [f"owner/act: tag v2.0.0 points at {shas['new']}, the record has {shas['old']}"]


def test_a_missing_tag_fails(server: tuple[Path, dict[str, str]]) -> None:
    root, shas = server
    assert pins.verify(pin("owner/act", "v9.9.9", shas["new"]), str(root)) == [
        f"owner/act: {root}/owner/act has no tag v9.9.9"
    ]


def test_a_path_without_metadata_fails(server: tuple[Path, dict[str, str]]) -> None:
    root, shas = server
    (problem,) = pins.verify(pin("owner/act/nowhere", "v2.0.0", shas["new"]), str(root))
    assert problem == f"owner/act/nowhere: no action.yml or action.yaml under 'nowhere' at {shas['new']}"


def test_an_unreachable_repository_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    (problem,) = pins.verify(pin("owner/missing", "v1.0.0", "0" * 40), str(tmp_path))
    assert problem.startswith("owner/missing: ") and "does not appear to be a git repository" in problem


def write_record(path: Path, actions: object) -> Path:
    path.write_text(yaml.safe_dump({"actions": actions}))
    return path


def test_main_reports_every_pin_and_fails_on_any_problem(
    server: tuple[Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, shas = server
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    good = {"owner/act": {"version": "v2.0.0", "sha": shas["new"], "runs": "node24", "verified": "2026-12-04"}}
    record = write_record(tmp_path / "pins.yaml", good)
    assert pins.main(["verify", "--record", str(record), "--server", str(root)]) == 0
    assert f"ok  owner/act@{shas['new']} # v2.0.0 (node24)" in capsys.readouterr().out
    assert f"| `owner/act` | v2.0.0 | `{shas['new']}` | node24 | ok |" in summary.read_text()

    bad = {**good, "owner/act/sub": {"version": "v1.0.0", "sha": shas["new"], "runs": "composite"}}
    assert pins.main(["verify", "--record", str(write_record(record, bad)), "--server", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"FAILED  owner/act/sub@{shas['new']} # v1.0.0 (composite)" in out
    assert f"::error::owner/act/sub: tag v1.0.0 points at {shas['old']}, the record has {shas['new']}" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("images: {}\n", "no `actions:` mapping"),
        ("actions:\n  owner/act: {version: v1.0.0}\n", "actions.owner/act needs version, sha and runs"),
        ("actions: [\n", "while parsing"),
    ],
)
def test_main_refuses_a_broken_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    record = tmp_path / "pins.yaml"
    if content is not None:
        record.write_text(content)
    assert pins.main(["verify", "--record", str(record)]) == 2
    assert message in capsys.readouterr().err


def test_the_repository_record_loads() -> None:
    loaded = pins.load_pins(Path(__file__).resolve().parents[2] / ".github" / "pins.yaml")
    assert {p.action for p in loaded} >= {"actions/checkout", "github/codeql-action/upload-sarif"}
    upload = next(p for p in loaded if p.path)
    assert (upload.repository, upload.path) == ("github/codeql-action", "upload-sarif")
