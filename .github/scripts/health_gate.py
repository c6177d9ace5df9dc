"""Health gate after a deploy: observe the pod, decide promote / rollback / wait; and the CLI the workflows call.

The poller asks the pod's `/health/ready` (and, optionally, the verdict at `/api/results` with a Bearer
token) every few seconds and feeds the timeline of observations to a pure decision:

- rollback when readiness failed `failures` times within `window` seconds, when the pods restarted more than
  `max_restarts` times, or when the deadline passed without `successes` healthy observations in a row;
- promote after `successes` healthy observations in a row (no observation at all is never a success);
- wait otherwise.

Restarts count from the gate's start: the first count read is the baseline of each container, and pods
being deleted (the replaced revision's) are left out, so neither old restarts nor old pods decide.

Where the gate looks and which revision a rollback returns to are decided in helm_release.py.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from actions_io import write_outputs, write_summary
from helm_release import LocateError, RollbackRefused, locate, rollback_target

Action = Literal["promote", "rollback", "wait"]


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


@dataclass
class Observer:
    """Takes one observation of a running pod over HTTP (and, when asked, of its pods' restarts)."""

    client: httpx.Client
    verdict: bool = False
    token: str | None = None
    username: str | None = None
    password: str | None = None
    restarts_command: str | None = None
    _restart_baseline: dict[str, int] | None = field(default=None, init=False)  # the first counts read

    def observe(self, at: float) -> Observation:
        try:
            response = self.client.get("/health/ready")
            ready, detail = response.status_code == 200, f"ready {response.status_code}"
        except httpx.HTTPError as error:
            ready, detail = False, f"ready: {type(error).__name__}"  # the class says it; the text may hold the URL
        verdict = self._read_verdict() if self.verdict and ready else None
        restarts = self._read_restarts() if self.restarts_command else None
        return Observation(at=round(at, 3), ready=ready, detail=detail, verdict=verdict, restarts=restarts)

    def _read_verdict(self) -> str | None:
        try:
            if self.token is None and self.username and self.password:
                login = self.client.post("/api/token", data={"username": self.username, "password": self.password})
                if login.status_code != 200:
                    return f"login refused ({login.status_code})"
                self.token = str(login.json()["access_token"])
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            response = self.client.get("/api/results", headers=headers)
            if response.status_code == 404:
                return None  # no run yet
            if response.status_code != 200:
                return f"results {response.status_code}"
            verdict = response.json().get("verdict")
            return None if verdict is None else str(verdict)
        except (httpx.HTTPError, ValueError, KeyError) as error:
            return f"results: {type(error).__name__}"

    def _read_restarts(self) -> int | None:
        assert self.restarts_command is not None
        try:
            output = subprocess.run(
                shlex.split(self.restarts_command), check=True, capture_output=True, text=True, timeout=30
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
        observer = Observer(
            client,
            verdict=args.verdict,
            token=os.environ.get("HEALTH_GATE_TOKEN") or None,
            username=os.environ.get("HEALTH_GATE_USERNAME") or None,
            password=os.environ.get("HEALTH_GATE_PASSWORD") or None,
            restarts_command=args.restarts_command,
        )
        decision, observations = poll(observer.observe, policy, args.interval)
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
