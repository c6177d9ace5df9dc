"""Where the health gate reaches a release, and the revision a rollback returns to.

The rollback target is the newest earlier revision in `helm history -o json` that was deployed successfully
with a different app version. A release that is itself a rollback is never rolled back automatically.

`locate` finds what the gate talks to from the release's labelled objects, never from a guessed name: the chart
names them after its fullname (`<release>-airia-test-pod` unless overridden), and the auth Secret may be the
operator's own (`auth.existingSecret`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SUCCESSFUL_STATUSES = frozenset({"deployed", "superseded"})  # helm's statuses of a revision that went live


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
