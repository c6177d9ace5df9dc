"""Registry clean-up: the plan's rules and safety limits, and deletion against a real local HTTP server."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import retention
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from retention import PlanError, Policy, execute, kept_by_rules, parse_versions, plan

from tests.pipeline.helpers import Receiver

NOW = datetime(2026, 6, 1, tzinfo=UTC)
POLICY = Policy(keep_dev=2, min_age_days=14, max_delete_share=0.9, max_delete_count=100)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def version(n: int, days_old: float, *tags: str) -> dict[str, Any]:
    created = (NOW - timedelta(days=days_old)).isoformat().replace("+00:00", "Z")
    return {
        "id": 1000 + n,
        "name": digest(n),
        "created_at": created,
        "updated_at": created,
        "metadata": {"package_type": "container", "container": {"tags": list(tags)}},
    }


# A release index (1) with its platform images (2, 3) and attestation (4); an old dev index (5) with its
# children (6, 7); dev images of various ages (8-10); an old orphan (11); a young orphan (12); a signature (13).
VERSIONS = [
    version(1, 90, "1.4.2", "v1.4.2", "1.4", "latest"),
    version(2, 90),
    version(3, 90),
    version(4, 90),
    version(5, 80, "sha-aaaaaaa"),
    version(6, 80),
    version(7, 80),
    version(8, 60, "sha-bbbbbbb"),
    version(9, 50, "sha-ccccccc"),
    version(10, 40, "main", "sha-ddddddd"),
    version(11, 70),
    version(12, 3),
    version(13, 90, f"sha256-{digest(1)[7:]}.sig"),
]
CHILDREN = {
    digest(1): [digest(2), digest(3), digest(4)],
    digest(9): [],
    digest(10): [],
    digest(12): [],
}


def planned(versions: list[dict[str, Any]] = VERSIONS, policy: Policy = POLICY) -> retention.Plan:
    return plan(parse_versions(versions), CHILDREN, policy, NOW)


def test_rules_keep_releases_newest_dev_images_young_ones_and_their_references() -> None:
    result = planned()
    reasons = {entry.id - 1000: entry.reason for entry in result.keep}
    assert reasons == {
        1: "release tag 1.4.2",
        2: f"referenced by kept index {digest(1)}",
        3: f"referenced by kept index {digest(1)}",
        4: f"referenced by kept index {digest(1)}",
        9: "one of the newest 2 development images",
        10: "one of the newest 2 development images",
        12: "younger than 14 days",
        13: "artifact " + f"sha256-{digest(1)[7:]}.sig of a kept image",
    }
    assert sorted(entry.id - 1000 for entry in result.delete) == [5, 6, 7, 8, 11]
    assert result.aborted is None


def test_moving_and_prerelease_tags_are_protected_too() -> None:
    old = [version(1, 400, "1"), version(2, 400, "v2.1"), version(3, 400, "3.0.0-rc.1"), version(4, 400, "dev")]
    result = plan(
        parse_versions(old), {digest(n): [] for n in (1, 2, 3, 4)}, Policy(keep_dev=0, max_delete_share=1), NOW
    )
    assert [entry.id for entry in result.delete] == [1004]


def test_manifests_of_every_kept_version_are_required() -> None:
    with pytest.raises(PlanError, match="manifests not supplied"):
        plan(parse_versions(VERSIONS), {}, POLICY, NOW)


def test_past_a_safety_limit_the_plan_deletes_nothing() -> None:
    by_count = planned(policy=Policy(keep_dev=2, max_delete_count=4, max_delete_share=1))
    assert by_count.aborted == "5 deletions exceed the limit of 4"
    assert by_count.delete == [] and len(by_count.keep) == len(VERSIONS)
    by_share = planned(policy=Policy(keep_dev=2, max_delete_share=0.3))
    assert by_share.aborted == "deleting 38% of all versions exceeds the limit of 30%"
    assert by_share.delete == []


def test_parse_versions_accepts_slurped_pages_and_names_bad_entries() -> None:
    assert len(parse_versions([VERSIONS[:5], VERSIONS[5:]])) == len(VERSIONS)
    assert parse_versions([]) == []
    with pytest.raises(PlanError, match="JSON array"):
        parse_versions({"message": "Bad credentials"})
    with pytest.raises(PlanError, match="not a package version"):
        parse_versions([{"id": 1}])


# Property: whatever the registry holds, no version with a release tag and no child of a kept index is deleted;
# an aborted plan deletes nothing.
tag_choices = st.sampled_from(["1.4.2", "v1.4.2", "1", "v1.4", "latest", "0.2.0-rc.1", "main", "sha-abc", "pr-7"])


@st.composite
def registries(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    count = draw(st.integers(0, 15))
    items = [
        version(n, draw(st.floats(0, 400)), *draw(st.lists(tag_choices, max_size=2, unique=True))) for n in range(count)
    ]
    children = {
        digest(n): draw(
            st.lists(st.sampled_from([digest(m) for m in range(count)]), max_size=3) if count else st.just([])
        )
        for n in range(count)
    }
    return items, children


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(registries(), st.integers(0, 5), st.floats(0, 30), st.floats(0, 1), st.integers(0, 20))
def test_plan_never_deletes_protected_versions(
    registry: tuple[list[dict[str, Any]], dict[str, list[str]]],
    keep_dev: int,
    min_age: float,
    max_share: float,
    max_count: int,
) -> None:
    items, children = registry
    policy = Policy(keep_dev, min_age, max_share, max_count)
    result = plan(parse_versions(items), children, policy, NOW)
    deleted = {entry.digest for entry in result.delete}
    kept = {entry.digest for entry in result.keep}
    assert deleted.isdisjoint(kept) and len(deleted) + len(kept) == len(items)
    for entry in result.delete:
        assert not any(retention.is_release_tag(tag) for tag in entry.tags)
    for parent in kept:
        assert deleted.isdisjoint(children.get(parent, []))
    assert len(deleted) <= max_count and (not items or len(deleted) / len(items) <= max_share)
    if result.aborted:
        assert not deleted


def test_kept_by_rules_lists_what_needs_a_manifest() -> None:
    assert set(kept_by_rules(parse_versions(VERSIONS), POLICY, NOW)) == set(CHILDREN)


# --- deletion against a real local HTTP server ------------------------------------------------------------------


def test_execute_deletes_exactly_the_plan_and_counts_404_as_done(receiver: Receiver) -> None:
    answers = {"/orgs/o/packages/container/p/versions/1005": 404, "/orgs/o/packages/container/p/versions/1008": 500}
    receiver.respond = lambda request: (answers.get(request.path, 204), {}, b"")
    result = planned()
    with httpx.Client(base_url=receiver.url) as client:
        outcome = execute(result.delete, client, "/orgs/o/packages/container/p/")
    assert [(r.method, r.path) for r in receiver.requests] == [
        ("DELETE", f"/orgs/o/packages/container/p/versions/{entry.id}") for entry in result.delete
    ]
    assert outcome.already_gone == [1005]
    assert outcome.failed == {1008: "HTTP 500"}
    assert sorted(outcome.deleted) == [1006, 1007, 1011]


def test_execute_reports_an_unreachable_api(closed_port: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{closed_port}") as client:
        outcome = execute(planned().delete[:1], client, "/user/packages/container/p")
    assert list(outcome.failed.values()) == ["ConnectError"]


# --- the CLI: kept → manifests → plan (dry run) → execute the very same plan ------------------------------------


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    versions = tmp_path / "versions.json"
    versions.write_text(json.dumps([VERSIONS]))  # as `gh api --paginate --slurp` writes it
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for parent, kids in CHILDREN.items():
        raw = (
            {"schemaVersion": 2, "manifests": [{"digest": kid, "size": 1} for kid in kids]} if kids else {"layers": []}
        )
        (manifests / f"{parent[7:]}.json").write_text(json.dumps(raw))
    return versions, manifests


def test_cli_dry_run_plan_is_exactly_what_execute_deletes(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    versions, manifests = write_inputs(tmp_path)
    policy = ["--keep-dev", "2", "--max-delete-share", "0.9", "--now", NOW.isoformat()]
    assert retention.main(["kept", "--versions", str(versions), *policy]) == 0
    assert set(capsys.readouterr().out.split()) == set(CHILDREN)

    plan_file = tmp_path / "plan.json"
    args = ["plan", "--versions", str(versions), "--manifests", str(manifests), "--output", str(plan_file)]
    assert retention.main([*args, *policy]) == 0
    shown = capsys.readouterr().out
    assert "### Registry clean-up plan: keep 8, delete 5" in shown
    planned_ids = [entry["id"] for entry in json.loads(plan_file.read_text())["delete"]]
    assert all(f"| delete | {i} |" in shown for i in planned_ids)

    monkeypatch.setenv("GITHUB_TOKEN", "ghs_test_token")
    receiver.respond = lambda request: (204, {}, b"")
    assert (
        retention.main(
            [
                "execute",
                "--plan",
                str(plan_file),
                "--package-path",
                "/orgs/o/packages/container/p",
                "--api-url",
                receiver.url,
            ]
        )
        == 0
    )
    assert [int(r.path.rsplit("/", 1)[1]) for r in receiver.requests] == planned_ids
    assert {r.headers["Authorization"] for r in receiver.requests} == {"Bearer ghs_test_token"}
    assert "deleted 5, already gone 0, failed 0, kept 8" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("keep_dev", "min_age_days", "kept"),
    [
        ("", "", [1, 5, 8, 9, 10, 12, 13]),  # a scheduled run has no inputs: the defaults (10 dev images, 14 days)
        ("0", "0", [1]),  # an explicit 0 is 0: only the release is kept
        ("1", "", [1, 10, 12]),
    ],
)
def test_cli_empty_policy_values_mean_the_defaults_and_zero_means_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_dev: str, min_age_days: str, kept: list[int]
) -> None:
    versions, _ = write_inputs(tmp_path)
    args = ["kept", "--versions", str(versions), "--now", NOW.isoformat()]
    assert retention.main([*args, "--keep-dev", keep_dev, "--min-age-days", min_age_days]) == 0
    assert sorted(capsys.readouterr().out.split()) == [digest(n) for n in kept]


def test_cli_rejects_impossible_policy_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    versions, _ = write_inputs(tmp_path)
    args = ["kept", "--versions", str(versions)]
    assert retention.main([*args, "--keep-dev", "-1"]) == 2
    assert "must not be negative" in capsys.readouterr().err
    assert retention.main([*args, "--max-delete-share", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        retention.main([*args, "--keep-dev", "ten"])
    assert exited.value.code == 2 and "invalid int value: 'ten'" in capsys.readouterr().err


def test_cli_aborted_plan_exits_1_and_cannot_be_executed(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    versions, manifests = write_inputs(tmp_path)
    plan_file = tmp_path / "plan.json"
    args = ["plan", "--versions", str(versions), "--manifests", str(manifests), "--output", str(plan_file)]
    assert retention.main([*args, "--keep-dev", "2", "--max-delete-count", "1", "--now", NOW.isoformat()]) == 1
    assert "**Aborted, nothing will be deleted:** 5 deletions exceed the limit of 1." in capsys.readouterr().out
    monkeypatch.setenv("GITHUB_TOKEN", "t")
    execute_args = ["execute", "--plan", str(plan_file), "--package-path", "/p", "--api-url", receiver.url]
    assert retention.main(execute_args) == 1
    assert receiver.requests == []


def test_cli_failures_and_missing_token(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(asdict(planned())))
    args = ["execute", "--plan", str(plan_file), "--package-path", "/p", "--api-url", receiver.url]
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    assert retention.main(args) == 2
    monkeypatch.setenv("GH_TOKEN", "t")
    receiver.respond = lambda request: (403, {}, b"")
    assert retention.main(args) == 1
    assert "error: version 1005: HTTP 403" in capsys.readouterr().err
    bad_manifests = tmp_path / "bad"
    bad_manifests.mkdir()
    (bad_manifests / f"{digest(1)[7:]}.json").write_text("[]")
    (tmp_path / "inputs").mkdir()
    versions, _ = write_inputs(tmp_path / "inputs")
    plan_args = ["plan", "--versions", str(versions), "--manifests", str(bad_manifests), "--output", str(plan_file)]
    assert retention.main(plan_args) == 2
    assert "not a manifest" in capsys.readouterr().err
