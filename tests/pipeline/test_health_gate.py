"""Health gate: the decision over observations, the real HTTP poller, and the rollback target from helm history."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import health_gate
import helm_release
import httpx
import pytest
import yaml
from health_gate import Decision, Observation, Observer, Policy, decide, poll
from helm_release import RollbackRefused, rollback_target
from hypothesis import given
from hypothesis import strategies as st

from tests.deploy.tools import require
from tests.deploy.tools import run as run_tool
from tests.pipeline.helpers import ROOT, Receiver, json_response
from tests.servers import StallServer, free_port

POLICY = Policy(deadline=60, failures=3, window=30, max_restarts=1, successes=3)


def ok(at: float, **extra: Any) -> Observation:
    return Observation(at=at, ready=True, detail="ready 200", **extra)


def down(at: float, detail: str = "ready 503") -> Observation:
    return Observation(at=at, ready=False, detail=detail)


# --- the decision ---------------------------------------------------------------------------------------------


def test_no_data_is_never_success() -> None:
    assert decide([], POLICY, now=10) == Decision("wait", "0 of 3 healthy observations so far")
    assert decide([], POLICY, now=60) == Decision(
        "rollback", "no success within the 60 s deadline (no observation at all)"
    )


def test_promotes_after_enough_healthy_observations_in_a_row() -> None:
    assert decide([ok(1), ok(2)], POLICY, now=2).action == "wait"
    assert decide([down(0), ok(1), ok(2), ok(3)], POLICY, now=3) == Decision(
        "promote", "3 healthy observations in a row"
    )
    assert decide([ok(1), ok(2), down(3)], POLICY, now=3).action == "wait"


def test_rolls_back_after_n_failures_within_the_window() -> None:
    timeline = [down(0), ok(10), down(20), down(25, "ready: ConnectError")]
    decision = decide(timeline, POLICY, now=25)
    assert decision == Decision("rollback", "readiness failed 3 times within 30 s (last: ready: ConnectError)")
    assert decide(timeline, POLICY, now=31).action == "wait"  # the first failure left the window


def test_rolls_back_when_pods_restart_too_often() -> None:
    assert decide([ok(1, restarts=1), ok(2, restarts=2)], POLICY, now=2) == Decision(
        "rollback", "pods restarted 2 times (allowed: 1)"
    )
    assert decide([ok(1, restarts=2), ok(2)], POLICY, now=2).action == "rollback"  # the last known count counts


def test_rolls_back_at_the_deadline_without_success() -> None:
    assert decide([ok(50), ok(55)], POLICY, now=60) == Decision(
        "rollback", "no success within the 60 s deadline (last: ready 200)"
    )


def test_verdict_must_be_ready_when_required() -> None:
    policy = Policy(deadline=60, failures=2, window=60, successes=2, require_verdict=True)
    assert decide([ok(1, verdict=None), ok(2, verdict=None)], policy, now=2).action == "wait"  # still running
    assert decide([ok(1, verdict="ready"), ok(2, verdict="ready")], policy, now=2).action == "promote"
    assert decide([ok(1, verdict="not_ready"), ok(2, verdict="results 401")], policy, now=2).action == "rollback"


def test_a_policy_that_could_promote_on_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Policy(successes=0)


observations = st.lists(
    st.builds(
        Observation,
        at=st.floats(0, 100),
        ready=st.booleans(),
        detail=st.just("x"),
        verdict=st.sampled_from([None, "ready", "not_ready"]),
        restarts=st.one_of(st.none(), st.integers(0, 3)),
    ),
    max_size=10,
).map(lambda items: sorted(items, key=lambda o: o.at))


@given(observations, st.floats(0, 200), st.booleans())
def test_promotion_always_rests_on_enough_healthy_observations(
    timeline: list[Observation], now: float, require_verdict: bool
) -> None:
    policy = Policy(deadline=100, failures=3, window=30, max_restarts=1, successes=3, require_verdict=require_verdict)
    decision = decide(timeline, policy, now)
    if decision.action == "promote":
        assert len(timeline) >= policy.successes
        assert all(health_gate.healthy(o, policy) for o in timeline[-policy.successes :])
    if now >= policy.deadline:
        assert decision.action != "wait"


# --- the poller against real local servers --------------------------------------------------------------------


def observer_for(url: str, **options: Any) -> Iterator[Observer]:
    with httpx.Client(base_url=url, timeout=options.pop("timeout", 2.0)) as client:
        yield Observer(client, **options)


def test_poller_promotes_a_healthy_server(receiver: Receiver) -> None:
    receiver.respond = lambda request: json_response(200, {"status": "ready"})
    for observer in observer_for(receiver.url):
        decision, seen = poll(observer.observe, Policy(deadline=5, successes=3), interval=0.01)
    assert decision.action == "promote"
    assert [o.detail for o in seen] == ["ready 200"] * 3
    assert {r.path for r in receiver.requests} == {"/health/ready"}


def test_poller_rolls_back_a_503_server(receiver: Receiver) -> None:
    receiver.respond = lambda request: json_response(503, {"status": "not ready"})
    for observer in observer_for(receiver.url):
        decision, seen = poll(observer.observe, Policy(deadline=5, failures=3, window=5), interval=0.01)
    assert decision.action == "rollback"
    assert "readiness failed 3 times" in decision.reason and len(seen) == 3


def test_poller_rolls_back_a_stopped_server(closed_port: int) -> None:
    for observer in observer_for(f"http://127.0.0.1:{closed_port}"):
        decision, _ = poll(observer.observe, Policy(deadline=5, failures=2, window=5), interval=0.01)
    assert decision == Decision("rollback", "readiness failed 2 times within 5 s (last: ready: ConnectError)")


def test_poller_rolls_back_a_server_that_never_answers(stall: StallServer) -> None:
    started = time.monotonic()
    for observer in observer_for(f"http://127.0.0.1:{stall.port}", timeout=0.2):
        decision, seen = poll(observer.observe, Policy(deadline=0.5, failures=5, window=5), interval=0.05)
    assert decision.action == "rollback" and seen[-1].detail == "ready: ReadTimeout"
    assert time.monotonic() - started < 3


def test_poller_reads_the_verdict_with_a_token_from_login(receiver: Receiver) -> None:
    def respond(request: Any) -> tuple[int, dict[str, str], bytes]:
        if request.path == "/api/token":
            assert request.body == b"username=admin&password=s3cret-pass-phrase"
            return json_response(200, {"access_token": "tok", "token_type": "bearer"})
        if request.path == "/api/results":
            assert request.headers["Authorization"] == "Bearer tok"
            return json_response(200, {"verdict": "ready"})
        return json_response(200, {"status": "ready"})

    receiver.respond = respond
    for observer in observer_for(receiver.url, verdict=True, username="admin", password="s3cret-pass-phrase"):
        assert observer.observe(0) == Observation(0, True, "ready 200", verdict="ready")
        observer.observe(1)
    assert [r.path for r in receiver.requests].count("/api/token") == 1  # logged in once


@pytest.mark.parametrize(
    ("results", "verdict"),
    [
        (json_response(404, {"detail": "no run yet"}), None),
        (json_response(200, {"verdict": None, "pending": ["db"]}), None),
        (json_response(200, {"verdict": "not_ready"}), "not_ready"),
        (json_response(401, {"detail": "login"}), "results 401"),
        ((200, {}, b"not json"), "results: JSONDecodeError"),
    ],
)
def test_poller_verdict_states(
    receiver: Receiver, results: tuple[int, dict[str, str], bytes], verdict: str | None
) -> None:
    receiver.respond = lambda request: results if request.path == "/api/results" else json_response(200, {})
    for observer in observer_for(receiver.url, verdict=True, token="given"):
        assert observer.observe(0).verdict == verdict


def test_poller_reports_a_refused_login(receiver: Receiver) -> None:
    receiver.respond = lambda request: json_response(401 if request.path == "/api/token" else 200, {})
    for observer in observer_for(receiver.url, verdict=True, username="admin", password="wrong-password"):
        assert observer.observe(0).verdict == "login refused (401)"


def pod_item(
    name: str, *restarts: int, uid: str | None = None, terminating: bool = False, containers: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One item of `kubectl get pods -o json`, as far as the gate reads it."""
    metadata: dict[str, Any] = {"name": name, "uid": uid or f"uid-{name}"}
    if terminating:
        metadata["deletionTimestamp"] = "2026-01-05T10:00:00Z"
    names = containers or tuple(f"c{i}" for i in range(len(restarts)))
    statuses = [{"name": n, "restartCount": count, "ready": True} for n, count in zip(names, restarts, strict=True)]
    return {"metadata": metadata, "status": {"phase": "Running", "containerStatuses": statuses}}


def test_restart_counts_leave_out_terminating_pods() -> None:
    pods = {
        "items": [pod_item("new-a", 0, 1), pod_item("old-b", 7, terminating=True), {"metadata": {"name": "pending"}}]
    }
    assert health_gate.restart_counts(pods) == {"uid-new-a/c0": 0, "uid-new-a/c1": 1}


def test_restarts_are_counted_from_the_baseline() -> None:
    baseline = {"uid-a/c0": 4, "uid-b/c0": 2}
    assert health_gate.restarts_since(baseline, baseline) == 0
    assert health_gate.restarts_since(baseline, {"uid-a/c0": 5, "uid-b/c0": 2}) == 1
    assert health_gate.restarts_since(baseline, {"uid-a/c0": 4}) == 0  # a pod that went away takes nothing along
    assert health_gate.restarts_since(baseline, {"uid-a/c0": 4, "uid-new/c0": 2}) == 2  # a new pod counts in full
    # a pod replaced under the same name is another uid: its restarts are new, not compared with the old pod's
    assert health_gate.restarts_since({"uid-a/c0": 9}, {"uid-a2/c0": 1}) == 1


def test_poller_judges_restarts_relative_to_the_gate_start(receiver: Receiver, tmp_path: Path) -> None:
    """A rollback's first look sees the failed revision's pods: old restarts and terminating pods never count."""
    pods_file = tmp_path / "pods.json"
    receiver.respond = lambda request: json_response(200, {})
    command = f'{sys.executable} -c "import sys; print(open(sys.argv[1]).read())" {pods_file}'
    timeline = [
        # at the start: the rolled-back revision's pod (no restarts) and the failed one's, crash-looping, terminating
        [pod_item("good", 0), pod_item("failed", 12, terminating=True)],
        [pod_item("good", 0), pod_item("failed", 14, terminating=True)],  # the dying pod restarts again: not counted
        [pod_item("good", 0)],
        [pod_item("good", 1)],  # the release's own pod restarts: counted
    ]
    seen = []
    for observer in observer_for(receiver.url, restarts_command=command):
        for at, pods in enumerate(timeline):
            pods_file.write_text(json.dumps({"items": pods}))
            seen.append(observer.observe(at).restarts)
    assert seen == [0, 0, 0, 1]
    policy = Policy(deadline=60, failures=3, window=30, max_restarts=0, successes=3)
    observations = [ok(at, restarts=count) for at, count in enumerate(seen)]
    assert decide(observations[:3], policy, now=2).action == "promote"
    assert decide(observations, policy, now=3) == Decision("rollback", "pods restarted 1 times (allowed: 0)")


def test_poller_baseline_is_the_first_count_it_could_read(receiver: Receiver, tmp_path: Path) -> None:
    pods_file = tmp_path / "pods.json"
    receiver.respond = lambda request: json_response(200, {})
    command = f'{sys.executable} -c "import sys; print(open(sys.argv[1]).read())" {pods_file}'
    seen = []
    for observer in observer_for(receiver.url, restarts_command=command):
        for content in (
            "not json",
            json.dumps({"items": [pod_item("a", 3)]}),
            json.dumps({"items": [pod_item("a", 5)]}),
        ):
            pods_file.write_text(content)
            seen.append(observer.observe(0).restarts)
    assert seen == [None, 0, 2]
    for observer in observer_for(receiver.url, restarts_command=f"{sys.executable} -c 'raise SystemExit(1)'"):
        assert observer.observe(0).restarts is None  # unknown, not zero
    for observer in observer_for(receiver.url, restarts_command=f"{sys.executable} -c 'print([])'"):
        assert observer.observe(0).restarts is None  # not `kubectl get pods -o json` output


# --- where the gate finds a release: by label, against what the chart really renders ----------------------------

CHART = ROOT / "helm" / "airia-test-pod"


def kubectl_get(release: str, *sets: str) -> dict[str, Any]:
    """What `kubectl get service,deployment -l app.kubernetes.io/instance=<release> -o json` returns once the
    chart, rendered by the real `helm template`, is installed as `release`."""
    command = [require("helm"), "template", release, str(CHART), "--namespace", "ns", "--kube-version", "1.31.0"]
    for assignment in sets:
        command += ["--set", assignment]
    result = run_tool(command)
    assert result.returncode == 0, result.stderr
    items = [
        document
        for document in yaml.safe_load_all(result.stdout)
        if document
        and document["kind"] in ("Service", "Deployment")
        and document["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == release
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


@pytest.mark.parametrize(
    ("release", "sets", "names", "secret"),
    [
        ("staging", (), "staging-airia-test-pod", "staging-airia-test-pod-auth"),
        ("airia-test-pod", (), "airia-test-pod", "airia-test-pod-auth"),  # the workflows' default release name
        ("staging", ("fullnameOverride=readiness",), "readiness", "readiness-auth"),
        (
            "staging",
            ("auth.existingSecret=operator-auth", "service.port=9090"),
            "staging-airia-test-pod",
            "operator-auth",
        ),
    ],
)
def test_locate_finds_what_the_chart_renders(release: str, sets: tuple[str, ...], names: str, secret: str) -> None:
    located = helm_release.locate(kubectl_get(release, *sets))
    assert located == helm_release.Located(
        service=names,
        port=9090 if "service.port=9090" in sets else 8080,
        deployment=names,
        selector=f"app.kubernetes.io/instance={release},app.kubernetes.io/name=airia-test-pod",
        auth_secret=secret,
    )


def test_locate_ignores_objects_of_a_revision_being_deleted() -> None:
    current = kubectl_get("staging")
    leftover = kubectl_get("staging", "fullnameOverride=staging")  # an older revision named them differently
    for item in leftover["items"]:
        item["metadata"]["deletionTimestamp"] = "2026-01-05T10:00:00Z"
    located = helm_release.locate({"items": [*leftover["items"], *current["items"]]})
    assert (located.service, located.deployment) == ("staging-airia-test-pod", "staging-airia-test-pod")


def test_locate_explains_what_it_cannot_find() -> None:
    objects = kubectl_get("staging")
    with pytest.raises(helm_release.LocateError, match=r"expected one Service .* found 0 \(none\)"):
        helm_release.locate({"items": []})
    with pytest.raises(helm_release.LocateError, match=r"found 2 \(staging-airia-test-pod, staging-airia-test-pod\)"):
        helm_release.locate({"items": objects["items"] * 2})
    service, deployment = (helm_release._only(objects["items"], kind) for kind in ("Service", "Deployment"))
    service["spec"]["ports"][0]["name"] = "web"
    with pytest.raises(helm_release.LocateError, match="no port named http"):
        helm_release.locate(objects)
    service["spec"]["ports"][0]["name"] = "http"
    deployment["spec"]["template"]["spec"]["volumes"] = []
    assert helm_release.locate(objects).auth_secret == ""  # only the verdict needs it; the gate says so then
    deployment["spec"]["selector"] = {}
    with pytest.raises(helm_release.LocateError, match="no matchLabels"):
        helm_release.locate(objects)


def test_cli_locate(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(kubectl_get("staging", "auth.existingSecret=operator-auth")))
    output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert health_gate.main(["locate", "--objects", str(objects)]) == 0
    expected = (
        "service=staging-airia-test-pod\nport=8080\ndeployment=staging-airia-test-pod\n"
        "selector=app.kubernetes.io/instance=staging,app.kubernetes.io/name=airia-test-pod\nauth_secret=operator-auth\n"
    )
    assert capsys.readouterr().out == expected
    assert output.read_text() == expected
    shell = subprocess.run(
        ["bash", "-c", 'eval "$(cat)"; printf "%s|" "$service" "$port" "$selector" "$auth_secret"'],
        input=expected,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.split("|") == [
        "staging-airia-test-pod",
        "8080",
        "app.kubernetes.io/instance=staging,app.kubernetes.io/name=airia-test-pod",
        "operator-auth",
        "",
    ]
    for text, message in (
        ('{"kind": "List", "items": []}', "expected one Service"),
        ("[]", "a JSON object"),
        ("not json", "error: "),
    ):
        objects.write_text(text)
        assert health_gate.main(["locate", "--objects", str(objects)]) == 1
        assert message in capsys.readouterr().err
    assert health_gate.main(["locate", "--objects", str(tmp_path / "missing.json")]) == 1


# --- against a real instance of the pod ---------------------------------------------------------------------


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m app serve` on a free port, with one tcp target pointing at a real local listener."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = tmp_path / "targets.yaml"
    config.write_text(
        f"targets:\n  - name: local-port\n    kind: tcp\n    host: 127.0.0.1\n    port: {listener.getsockname()[1]}\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "TESTPOD_CONFIG": str(config),
        "TESTPOD_AUTH_PASSWORD": "gate-test-Password-4821",
        "TESTPOD_SECRET_KEY": "k" * 16 + "gate-test-signing-key-0123456789",
        "TESTPOD_SECRETS_DIR": str(tmp_path / "no-secrets"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(timeout=10)
        listener.close()


def gate(url: str, *extra: str, report: Path) -> int:
    return health_gate.main(["poll", "--url", url, "--interval", "0.1", "--report", str(report), *extra])


def test_gate_promotes_a_real_pod_and_rolls_back_when_it_stops(
    pod: tuple[str, subprocess.Popen[bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, process = pod
    monkeypatch.setenv("HEALTH_GATE_USERNAME", "admin")
    monkeypatch.setenv("HEALTH_GATE_PASSWORD", "gate-test-Password-4821")
    output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    report = tmp_path / "gate.json"
    # start-up counts against the deadline, not against the failure budget
    assert gate(url, "--deadline", "30", "--failures", "200", "--window", "30", "--verdict", report=report) == 0
    result = json.loads(report.read_text())
    assert result["decision"]["action"] == "promote"
    assert result["observations"][-1] == {
        "at": result["observations"][-1]["at"],
        "ready": True,
        "detail": "ready 200",
        "verdict": "ready",
        "restarts": None,
    }
    assert "action=promote" in output.read_text()

    process.terminate()
    process.wait(timeout=10)
    assert gate(url, "--deadline", "10", "--failures", "3", report=report) == 1
    assert json.loads(report.read_text())["decision"]["reason"].startswith("readiness failed 3 times")


def test_cli_rejects_an_impossible_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert health_gate.main(["poll", "--url", "http://127.0.0.1:1", "--successes", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


# --- the rollback target --------------------------------------------------------------------------------------


def revision(
    number: int, app: str, status: str = "superseded", description: str = "Upgrade complete"
) -> dict[str, Any]:
    return {
        "revision": number,
        "updated": f"2026-01-0{number}T10:00:00Z",
        "status": status,
        "chart": f"airia-test-pod-{app}",
        "app_version": app,
        "description": description,
    }


HISTORY = [
    revision(1, "1.3.0", description="Install complete"),
    revision(2, "1.4.0"),
    revision(3, "1.4.1", status="failed", description="Upgrade failed: timed out"),
    revision(4, "1.4.2"),
    revision(5, "1.4.2", description="Upgrade complete"),  # a config-only upgrade of the same version
    revision(6, "1.5.0", status="deployed"),
]


def test_target_is_the_newest_earlier_successful_revision_with_another_app_version() -> None:
    assert rollback_target(HISTORY)["revision"] == 5
    assert rollback_target(list(reversed(HISTORY)))["revision"] == 5  # order of the input does not matter


def test_failed_revisions_and_the_same_app_version_are_skipped() -> None:
    history = [*HISTORY[:5], revision(6, "1.4.2", status="deployed")]
    assert rollback_target(history)["revision"] == 2


def test_never_rolls_back_a_rollback() -> None:
    history = [*HISTORY, revision(7, "1.4.2", status="deployed", description="Rollback to 5")]
    with pytest.raises(RollbackRefused, match="itself a rollback"):
        rollback_target(history)
    assert rollback_target(history, revision=2)["revision"] == 2  # an operator may still choose explicitly


def test_explicit_revision_must_be_earlier_and_successful() -> None:
    assert rollback_target(HISTORY, revision=4)["app_version"] == "1.4.2"
    for bad in (3, 6, 99):
        with pytest.raises(RollbackRefused, match=f"revision {bad} is not"):
            rollback_target(HISTORY, revision=bad)


def test_a_deploy_that_created_no_revision_rolls_nothing_back() -> None:
    with pytest.raises(RollbackRefused, match="created no revision"):
        rollback_target(HISTORY, from_version="1.6.0")
    assert rollback_target(HISTORY, from_version="1.5.0")["revision"] == 5


def test_nothing_to_roll_back_to() -> None:
    with pytest.raises(RollbackRefused, match="no history"):
        rollback_target([])
    with pytest.raises(RollbackRefused, match="no earlier revision"):
        rollback_target([revision(1, "1.0.0", status="deployed")])


def test_cli_rollback_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    history = tmp_path / "history.json"
    history.write_text(json.dumps(HISTORY))
    output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert health_gate.main(["rollback-target", "--history", str(history)]) == 0
    assert capsys.readouterr().out == "5\n"
    assert output.read_text() == "revision=5\napp_version=1.4.2\n"
    assert health_gate.main(["rollback-target", "--history", str(history), "--revision", "3"]) == 1
    assert "refused: revision 3 is not" in capsys.readouterr().err
    history.write_text('{"error": "release: not found"}')
    assert health_gate.main(["rollback-target", "--history", str(history)]) == 1
    assert "JSON array" in capsys.readouterr().err
