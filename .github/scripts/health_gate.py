"""Health gate after a deploy, and the choice of the revision a rollback returns to.

The poller asks the pod's `/health/ready` (and, optionally, the verdict at `/api/results` with a Bearer
token) every few seconds and feeds the timeline of observations to a pure decision:

- rollback when readiness failed `failures` times within `window` seconds, when the pods restarted more than
  `max_restarts` times, or when the deadline passed without `successes` healthy observations in a row;
- promote after `successes` healthy observations in a row (no observation at all is never a success);
- wait otherwise.

Restarts count from the gate's start: the first count read is the baseline of each container, and pods
being deleted (the replaced revision's) are left out, so neither old restarts nor old pods decide.

The rollback target is the newest earlier revision in `helm history -o json` that was deployed successfully
with a different app version. A release that is itself a rollback is never rolled back automatically.

`locate` finds what the gate talks to from the release's labelled objects, never from a guessed name: the chart
names them after its fullname (`<release>-airia-test-pod` unless overridden), and the auth Secret may be the
operator's own (`auth.existingSecret`).

    kubectl get service,deployment -n NS -l app.kubernetes.io/instance=RELEASE -o json > objects.json
    python .github/scripts/health_gate.py locate --objects objects.json
    python .github/scripts/health_gate.py poll --url http://127.0.0.1:8080 --deadline 300 --report gate.json
    python .github/scripts/health_gate.py rollback-target --history history.json [--revision N]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from actions_io import write_outputs, write_summary

Action = Literal["promote", "rollback", "wait"]
SUCCESSFUL_STATUSES = frozenset({"deployed", "superseded"})  # helm's statuses of a revision that went live


@dataclass(frozen=True)
class Observation:
    at: float  # seconds since the gate started
    ready: bool  # /health/ready answered 200
    detail: str  # what was seen, e.g. "ready 200", "ready 503", "ready: ConnectError"
    verdict: str | None = None  # the run's verdict when asked: "ready", "not_ready", an error, or None (pending)
    restarts: int | None = None  # container restarts of the release's pods since the gate started, when measured


@dataclass(frozen=True)
class Policy:
    deadline: float = 300.0
    failures: int = 3
    window: float = 60.0
    max_restarts: int = 0
    successes: int = 3
    require_verdict: bool = False

    def __post_init__(self) -> None:
        if self.successes < 1 or self.failures < 1:
            raise ValueError("successes and failures must be at least 1")


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def healthy(observation: Observation, policy: Policy) -> bool | None:
    """True healthy, False failed, None not yet known (ready, but the verdict is still being computed)."""
    if not observation.ready:
        return False
    if not policy.require_verdict:
        return True
    if observation.verdict is None:
        return None
    return observation.verdict == "ready"


def decide(observations: Sequence[Observation], policy: Policy, now: float) -> Decision:
    """promote | rollback | wait, with the reason, from the observations so far."""
    restarts = next((o.restarts for o in reversed(observations) if o.restarts is not None), None)
    if restarts is not None and restarts > policy.max_restarts:
        return Decision("rollback", f"pods restarted {restarts} times (allowed: {policy.max_restarts})")
    recent_failures = [o for o in observations if now - o.at <= policy.window and healthy(o, policy) is False]
    if len(recent_failures) >= policy.failures:
        return Decision(
            "rollback",
            f"readiness failed {len(recent_failures)} times within {policy.window:g} s "
            f"(last: {recent_failures[-1].detail})",
        )
    streak = 0
    for observation in reversed(observations):
        if healthy(observation, policy) is not True:
            break
        streak += 1
    if streak >= policy.successes:
        return Decision("promote", f"{streak} healthy observations in a row")
    if now >= policy.deadline:
        last = f"last: {observations[-1].detail}" if observations else "no observation at all"
        return Decision("rollback", f"no success within the {policy.deadline:g} s deadline ({last})")
    return Decision("wait", f"{streak} of {policy.successes} healthy observations so far")


def restart_counts(pods: dict[str, Any]) -> dict[str, int]:
    """Restarts per container (`<pod uid>/<container>`) in `kubectl get pods -o json` output.

    Pods with a deletionTimestamp are terminating (a replaced revision's): they no longer serve, so they are left out.
    """
    counts = {}
    for pod in pods.get("items", []):
        metadata = pod.get("metadata", {})
        if metadata.get("deletionTimestamp"):
            continue
        pod_id = metadata.get("uid") or metadata.get("name", "")
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            counts[f"{pod_id}/{status.get('name', '')}"] = int(status.get("restartCount", 0))
    return counts


def restarts_since(baseline: dict[str, int], counts: dict[str, int]) -> int:
    """Restarts after the baseline was taken; a container that appeared since counts all of its restarts."""
    return sum(max(0, count - baseline.get(container, 0)) for container, count in counts.items())


class Prober:
    """Takes one observation of a running pod over HTTP (and, when asked, of its pods' restarts)."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        verdict: bool = False,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        restarts_command: str | None = None,
    ) -> None:
        self._client = client
        self._verdict = verdict
        self._token = token
        self._credentials = (username, password) if username and password else None
        self._restarts_command = restarts_command
        self._restart_baseline: dict[str, int] | None = None  # the first counts read

    def observe(self, at: float) -> Observation:
        try:
            response = self._client.get("/health/ready")
            ready, detail = response.status_code == 200, f"ready {response.status_code}"
        except httpx.HTTPError as error:
            ready, detail = False, f"ready: {type(error).__name__}"  # the class says it; the text may hold the URL
        verdict = self._read_verdict() if self._verdict and ready else None
        restarts = self._read_restarts() if self._restarts_command else None
        return Observation(at=round(at, 3), ready=ready, detail=detail, verdict=verdict, restarts=restarts)

    def _read_verdict(self) -> str | None:
        try:
            if self._token is None and self._credentials is not None:
                login = self._client.post(
                    "/api/token", data={"username": self._credentials[0], "password": self._credentials[1]}
                )
                if login.status_code != 200:
                    return f"login refused ({login.status_code})"
                self._token = str(login.json()["access_token"])
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            response = self._client.get("/api/results", headers=headers)
            if response.status_code == 404:
                return None  # no run yet
            if response.status_code != 200:
                return f"results {response.status_code}"
            verdict = response.json().get("verdict")
            return None if verdict is None else str(verdict)
        except (httpx.HTTPError, ValueError, KeyError) as error:
            return f"results: {type(error).__name__}"

    def _read_restarts(self) -> int | None:
        assert self._restarts_command is not None
        try:
            output = subprocess.run(
                shlex.split(self._restarts_command), check=True, capture_output=True, text=True, timeout=30
            ).stdout
            counts = restart_counts(json.loads(output))
        except (OSError, subprocess.SubprocessError, ValueError, TypeError, AttributeError):
            return None  # unknown is not zero: the readiness rules still apply
        if self._restart_baseline is None:
            self._restart_baseline = counts
        return restarts_since(self._restart_baseline, counts)


def poll(
    observe: Callable[[float], Observation],
    policy: Policy,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Decision, list[Observation]]:
    """Observe every `interval` seconds until the decision is no longer `wait`."""
    start = clock()
    observations: list[Observation] = []
    while True:
        observations.append(observe(clock() - start))
        decision = decide(observations, policy, clock() - start)
        if decision.action != "wait":
            return decision, observations
        sleep(max(0.0, min(interval, policy.deadline - (clock() - start))))


class LocateError(Exception):
    """The release's objects do not show where the gate should look; the message says why."""


@dataclass(frozen=True)
class Located:
    service: str  # what the gate port-forwards to
    port: int  # the Service's `http` port
    deployment: str
    selector: str  # label selector of the Deployment's pods: what the restarts are counted over
    auth_secret: str  # the Secret mounted as `auth` (the chart's own or auth.existingSecret); "" when none


def _only(items: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [item for item in items if item.get("kind") == kind]
    if len(found) != 1:
        names = ", ".join(str(item.get("metadata", {}).get("name")) for item in found) or "none"
        raise LocateError(f"expected one {kind} with the release's label, found {len(found)} ({names})")
    return found[0]


def locate(objects: dict[str, Any]) -> Located:
    """Where the gate reaches a release, from `kubectl get service,deployment -l app.kubernetes.io/instance=R -o json`.

    Objects being deleted (left over from a revision that named them differently) are ignored.
    """
    items = [item for item in objects.get("items", []) if not item.get("metadata", {}).get("deletionTimestamp")]
    service, deployment = _only(items, "Service"), _only(items, "Deployment")
    service_name, deployment_name = str(service["metadata"]["name"]), str(deployment["metadata"]["name"])
    ports = service.get("spec", {}).get("ports", [])
    port = next((entry.get("port") for entry in ports if entry.get("name") == "http"), None)
    if not isinstance(port, int):
        raise LocateError(f"Service {service_name} has no port named http")
    labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    if not labels:
        raise LocateError(f"Deployment {deployment_name} has no matchLabels selector")
    volumes = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
    secret = next((v.get("secret", {}).get("secretName") for v in volumes if v.get("name") == "auth"), None)
    return Located(
        service=service_name,
        port=port,
        deployment=deployment_name,
        selector=",".join(f"{key}={value}" for key, value in sorted(labels.items())),
        auth_secret=str(secret or ""),
    )


class RollbackRefused(Exception):
    """No safe rollback target; the message says why and a human decides."""


def rollback_target(
    history: Sequence[dict[str, Any]], revision: int | None = None, from_version: str | None = None
) -> dict[str, Any]:
    """The helm history entry to roll back to.

    `revision` (an operator's explicit choice) must be an earlier revision that went live. Without it: the
    newest earlier revision that went live with a different app version, unless the current revision is
    itself a rollback. `from_version`, when given, must be the current revision's app version (so a deploy
    that failed before creating a revision never rolls back the release that was already running).
    """
    if not history:
        raise RollbackRefused("the release has no history: nothing to roll back to")
    entries = sorted(history, key=lambda entry: int(entry["revision"]))
    current = entries[-1]
    if from_version is not None and current.get("app_version") != from_version:
        raise RollbackRefused(
            f"revision {current['revision']} runs {current.get('app_version')!r}, not {from_version!r}: "
            "the failed deploy created no revision, so the running release stays"
        )
    earlier = [entry for entry in entries[:-1] if entry.get("status") in SUCCESSFUL_STATUSES]
    if revision is not None:
        chosen = next((entry for entry in earlier if int(entry["revision"]) == revision), None)
        if chosen is None:
            raise RollbackRefused(f"revision {revision} is not an earlier revision that was deployed successfully")
        return chosen
    if str(current.get("description", "")).startswith("Rollback to"):
        raise RollbackRefused(
            f"revision {current['revision']} is itself a rollback ({current['description']}): "
            "never roll back a rollback automatically"
        )
    different = [entry for entry in earlier if entry.get("app_version") != current.get("app_version")]
    if not different:
        raise RollbackRefused(
            f"no earlier revision went live with an app version other than {current.get('app_version')!r}"
        )
    return different[-1]


def _poll_command(args: argparse.Namespace) -> int:
    policy = Policy(
        deadline=args.deadline,
        failures=args.failures,
        window=args.window,
        max_restarts=args.max_restarts,
        successes=args.successes,
        require_verdict=args.verdict,
    )
    with httpx.Client(base_url=args.url, timeout=args.request_timeout) as client:
        prober = Prober(
            client,
            verdict=args.verdict,
            token=os.environ.get("HEALTH_GATE_TOKEN") or None,
            username=os.environ.get("HEALTH_GATE_USERNAME") or None,
            password=os.environ.get("HEALTH_GATE_PASSWORD") or None,
            restarts_command=args.restarts_command,
        )
        decision, observations = poll(prober.observe, policy, args.interval)
    if args.report:
        report = {
            "decision": asdict(decision),
            "policy": asdict(policy),
            "observations": [asdict(o) for o in observations],
        }
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{decision.action}: {decision.reason} ({len(observations)} observations)")
    write_outputs(action=decision.action, reason=decision.reason)
    write_summary(f"### Health gate: {decision.action}\n\n{decision.reason} ({len(observations)} observations)\n")
    return 0 if decision.action == "promote" else 1


def _rollback_target_command(args: argparse.Namespace) -> int:
    try:
        history = json.loads(args.history.read_text(encoding="utf-8"))
        if not isinstance(history, list):
            raise RollbackRefused("the history file must hold `helm history -o json` output (a JSON array)")
        target = rollback_target(history, args.revision, args.from_version)
    except (OSError, ValueError, KeyError, RollbackRefused) as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    print(target["revision"])
    print(
        f"revision {target['revision']}: app {target.get('app_version')}, chart {target.get('chart')}", file=sys.stderr
    )
    write_outputs(revision=str(target["revision"]), app_version=str(target.get("app_version", "")))
    return 0


def _locate_command(args: argparse.Namespace) -> int:
    try:
        objects = json.loads(args.objects.read_text(encoding="utf-8"))
        if not isinstance(objects, dict):
            raise LocateError("the objects file must hold `kubectl get -o json` output (a JSON object)")
        located = locate(objects)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, LocateError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    values = {name: str(value) for name, value in asdict(located).items()}
    for name, value in values.items():
        print(f"{name}={shlex.quote(value)}")  # `eval "$(... locate ...)"` sets them in a shell
    write_outputs(**values)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="health_gate.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gate = commands.add_parser("poll", help="poll until promote (exit 0) or rollback (exit 1)")
    gate.add_argument("--url", required=True, help="the pod's base URL, e.g. from kubectl port-forward")
    gate.add_argument("--interval", type=float, default=5.0, help="seconds between observations")
    gate.add_argument("--deadline", type=float, default=300.0, help="seconds to reach a decision")
    gate.add_argument("--failures", type=int, default=3, help="readiness failures that trigger a rollback ...")
    gate.add_argument("--window", type=float, default=60.0, help="... within this many seconds")
    gate.add_argument("--max-restarts", type=int, default=0, help="container restarts tolerated")
    gate.add_argument("--successes", type=int, default=3, help="healthy observations in a row to promote")
    gate.add_argument("--request-timeout", type=float, default=5.0, help="seconds per HTTP request")
    gate.add_argument(
        "--verdict",
        action="store_true",
        help="also require the verdict 'ready' from /api/results "
        "(token from $HEALTH_GATE_TOKEN, or $HEALTH_GATE_USERNAME and $HEALTH_GATE_PASSWORD)",
    )
    gate.add_argument("--restarts-command", help="prints `kubectl get pods -o json` for the release's pods")
    gate.add_argument("--report", type=Path, help="write the observations and the decision as JSON")
    target = commands.add_parser("rollback-target", help="print the revision to roll back to (exit 1: refused)")
    target.add_argument("--history", type=Path, required=True, help="`helm history RELEASE -o json` output")
    target.add_argument("--revision", type=int, help="an explicit earlier revision")
    target.add_argument("--from-version", help="the app version whose deploy failed")
    where = commands.add_parser("locate", help="print the Service, port, pods and auth Secret of a release")
    where.add_argument(
        "--objects", type=Path, required=True, help="`kubectl get service,deployment -l <instance label> -o json`"
    )
    args = parser.parse_args(argv)
    if args.command == "locate":
        return _locate_command(args)
    try:
        return _poll_command(args) if args.command == "poll" else _rollback_target_command(args)
    except ValueError as error:  # a policy that cannot work (e.g. --successes 0)
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
