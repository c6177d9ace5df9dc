"""The installed release as its users reach it: its server pod, its generated password, a run through its API."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx

from tests.cluster import netns, node
from tests.cluster.conftest import NAMESPACE, RELEASE, port_forward


def pod(release: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The release's one running server pod."""
    listed = json.loads(
        node.kubectl(
            "-n",
            namespace,
            "get",
            "pods",
            "-l",
            f"app.kubernetes.io/instance={release},app.kubernetes.io/name=airia-test-pod",
            "-o",
            "json",
        )
    )["items"]
    running = [
        p for p in listed if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    assert len(running) == 1, [p["metadata"]["name"] for p in listed]
    return dict(running[0])


def auth_password(secret: str, namespace: str = NAMESPACE) -> str:
    """The password as README and NOTES.txt read it: `get secret … -o jsonpath='{.data.auth_password}' | base64 -d`."""
    encoded = node.kubectl("-n", namespace, "get", "secret", secret, "-o", "jsonpath={.data.auth_password}")
    return base64.b64decode(encoded).decode()


def run_through_the_api(service: str, password: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    """Sign in through a port-forward to the Service, start a run, and read its results when it lands."""
    with port_forward(namespace, f"service/{service}", 8080) as port, netns.inside_node():
        return _run(f"http://127.0.0.1:{port}", password)


def _run(url: str, password: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30) as client:
        token = client.post("/api/token", data={"username": "admin", "password": password})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        started = client.post("/api/runs", headers=headers)
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            results = client.get("/api/results", headers=headers).json()
            if results["verdict"] is not None and results["started_at"] >= started.json()["started_at"]:
                return dict(results)
            time.sleep(1)
    raise AssertionError("the run did not finish within 90 s")


def statuses(run: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {r["name"]: (r["status"], r["stage"]) for r in run["results"]}
