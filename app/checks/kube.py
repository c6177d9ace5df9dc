"""The Kubernetes API as the cluster and storage kinds reach it: the pod's own service account (or a kubeconfig),
plain httpx with the probe's remaining time as the timeout of every call, answers read as JSON.

No Kubernetes client library: the kinds read a handful of fields from a dozen endpoints, httpx is already a
dependency, and every call takes its own timeout. The first call goes through the http kind's `exchange`, so a
connection or TLS failure is reported at its own stage.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, FilePath, StringConstraints

from app import __version__
from app.checks.base import CheckFailed, Probe, Stage, Target
from app.checks.http import exchange
from app.checks.net import NO_ANSWER
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    import httpx

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_NO_TOKEN = (
    "the pod's service account has no token mounted (automountServiceAccountToken is off)",
    "the chart mounts it when a cluster or storage target is configured; outside the chart set kubeconfig",
)


class KubeTarget(Target):
    """What the kinds that talk to the cluster's API share: how they reach it."""

    kubeconfig: FilePath | None = None  # default: the pod's own service account
    context: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None  # default: current-context


@dataclass(frozen=True)
class Credentials:
    server: str
    ssl_context: ssl.SSLContext
    token: str | None
    namespace: str  # the pod's namespace, or the kubeconfig context's


def credentials(target: KubeTarget) -> Credentials:
    """Read at every run: a projected service-account token is rotated by the kubelet."""
    if target.kubeconfig is None:
        return _service_account()
    return _kubeconfig(target.kubeconfig, target.context)


def _service_account() -> Credentials:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise CheckFailed(
            Stage.RESOLVE,
            "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset) and no kubeconfig given",
            "run it in the cluster, or set kubeconfig (and context) in this target",
        )
    try:
        token = (SERVICE_ACCOUNT / "token").read_text().strip()
        namespace = (SERVICE_ACCOUNT / "namespace").read_text().strip()
    except OSError:
        raise CheckFailed(Stage.AUTH, *_NO_TOKEN) from None
    try:
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    except OSError:
        raise CheckFailed(
            Stage.TLS, f"the cluster's CA {SERVICE_ACCOUNT / 'ca.crt'} cannot be read", _NO_TOKEN[1]
        ) from None
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Credentials(server, context, token, namespace)


def _kubeconfig(path: Path, name: str | None) -> Credentials:
    def invalid(why: str) -> CheckFailed:
        return CheckFailed(Stage.AUTH, f"kubeconfig {path}: {why}", "point kubeconfig at a working kubeconfig file")

    try:
        config = yaml.safe_load(path.read_text()) or {}
        name = name or config["current-context"]
        context = _named(config, "contexts", name)["context"]
        cluster = _named(config, "clusters", context["cluster"])["cluster"]
        user = _named(config, "users", context["user"])["user"] if context.get("user") else {}
    except yaml.YAMLError:  # its message quotes the file, which may hold a token
        raise invalid("not valid YAML") from None
    except (OSError, KeyError, TypeError) as error:
        raise invalid(f"unreadable or incomplete ({type(error).__name__}: {error})") from None
    if "exec" in user or "auth-provider" in user:
        raise invalid("exec and auth-provider credentials are not supported; use a token or a client certificate")
    base = path.parent
    try:
        ssl_context = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            ssl_context.check_hostname, ssl_context.verify_mode = False, ssl.CERT_NONE
        if "certificate-authority-data" in cluster:
            ssl_context.load_verify_locations(cadata=_decoded(cluster["certificate-authority-data"]))
        elif "certificate-authority" in cluster:
            ssl_context.load_verify_locations(cafile=str(base / cluster["certificate-authority"]))
        if "client-certificate-data" in user or "client-certificate" in user:
            _load_client_certificate(ssl_context, user, base)
        token = user.get("token")
        if token is None and "tokenFile" in user:
            token = (base / user["tokenFile"]).read_text().strip()
    except (OSError, ValueError, KeyError) as error:  # ssl.SSLError is an OSError; bad base64 a ValueError
        raise invalid(f"its certificates or token cannot be loaded ({type(error).__name__})") from None
    return Credentials(str(cluster["server"]).rstrip("/"), ssl_context, token, context.get("namespace", "default"))


def _named(config: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return dict(entry)
    raise KeyError(f"no {section[:-1]} named {name!r}")


def _decoded(data: str) -> str:
    import base64

    return base64.b64decode(data).decode()


def _load_client_certificate(context: ssl.SSLContext, user: dict[str, Any], base: Path) -> None:
    """ssl loads a certificate only from files: inline data is written to a private temporary directory first."""
    with tempfile.TemporaryDirectory() as scratch:
        files = []
        for field in ("client-certificate", "client-key"):
            if f"{field}-data" in user:
                written = Path(scratch) / field
                written.write_text(_decoded(user[f"{field}-data"]))
                files.append(str(written))
            else:
                files.append(str(base / user[field]))
        context.load_cert_chain(files[0], files[1])


class Api:
    """An open connection to the API server; every call takes the probe's remaining time as its timeout."""

    def __init__(self, probe: Probe, creds: Credentials, client: httpx.Client) -> None:
        self.probe, self.creds, self.client = probe, creds, client
        self.host = urlsplit(creds.server).hostname or creds.server

    @property
    def namespace(self) -> str:
        return self.creds.namespace

    def version(self) -> str:
        """GET /version through `exchange`, so connect and TLS failures are reported at their own stages."""
        answer = exchange(self.probe, self.client, "GET", "/version")
        if answer.status in (401, 403):
            raise _refused(answer.status, "GET /version", _message(answer.body))
        body = _json(answer.body)
        if answer.status != 200 or "gitVersion" not in body:
            raise CheckFailed(
                Stage.OPERATION,
                f"{self.creds.server}/version answered HTTP {answer.status}, not a Kubernetes version",
                "check that the address is the cluster's API server",
            )
        return str(body["gitVersion"])

    def call(
        self,
        method: Literal["GET", "POST", "DELETE"],
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
        refusals: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON body). 401 and 403 are failures at auth and permission (with `refusals`, else a 403 is
        returned: admission, e.g. a quota, refuses with 403 too); other statuses are the caller's."""
        import httpx

        what = f"{method} {path}"
        try:
            response = self.client.request(
                method, path, json=body, params=params, timeout=timeout or self.probe.remaining()
            )
        except httpx.TimeoutException:
            stage = self.probe.stage
            raise CheckFailed(
                stage, f"the API server did not answer {what} in time", NO_ANSWER[stage].replace("server", "API server")
            ) from None
        except httpx.HTTPError as error:
            raise CheckFailed(
                self.probe.stage,
                f"the API server broke off {what}: {type(error).__name__}",
                "check the API server's health (and any proxy in front of it)",
            ) from None
        if response.status_code == 401 or (response.status_code == 403 and refusals):
            raise _refused(response.status_code, what, _message(response.content))
        return response.status_code, _json(response.content)

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """A read that must succeed."""
        status, body = self.call("GET", path, params=params)
        if status != 200:
            raise unexpected(status, f"GET {path}", body)
        return body

    def allowed(self, verb: str, resource: str, group: str = "", namespace: str = "", subresource: str = "") -> bool:
        """SelfSubjectAccessReview: may this identity do `verb` on `resource`?"""
        attributes = {
            "verb": verb,
            "resource": resource,
            "group": group,
            "namespace": namespace,
            "subresource": subresource,
        }
        status, body = self.call(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {k: v for k, v in attributes.items() if v}},
            },
        )
        if status != 201:
            raise unexpected(status, "a SelfSubjectAccessReview", body)
        return bool(body.get("status", {}).get("allowed"))

    def events(self, namespace: str, kind: str, name: str) -> list[str]:
        """The events about one object, oldest first, as 'Reason: message' lines."""
        status, body = self.call(
            "GET",
            f"/api/v1/namespaces/{namespace}/events",
            params={"fieldSelector": f"involvedObject.kind={kind},involvedObject.name={name}"},
        )
        if status != 200:
            return []
        items = sorted(body.get("items", []), key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return [clean_remote_text(f"{e.get('reason', '')}: {e.get('message', '')}", 300) for e in items]


@contextlib.contextmanager
def open_api(probe: Probe, target: KubeTarget) -> Iterator[Api]:
    import httpx

    creds = credentials(target)
    headers = {"User-Agent": f"airia-test-pod/{__version__}", "Accept": "application/json"}
    if creds.token:
        headers["Authorization"] = f"Bearer {creds.token}"
    with httpx.Client(
        base_url=creds.server,
        verify=creds.ssl_context,
        headers=headers,
        timeout=httpx.Timeout(probe.remaining()),
        trust_env=False,
    ) as client:
        yield Api(probe, creds, client)


def _json(content: bytes) -> dict[str, Any]:
    import json

    try:
        document = json.loads(content)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _message(content: bytes) -> str:
    return clean_remote_text(str(_json(content).get("message", "")), 300)


def _refused(status: int, what: str, message: str) -> CheckFailed:
    if status == 401:
        return CheckFailed(
            Stage.AUTH,
            f"the API server does not accept the credentials ({what}: 401 Unauthorized)",
            "the service-account token (or the kubeconfig's user) is invalid or expired: check the pod's service "
            "account exists and its token is mounted",
        )
    return CheckFailed(
        Stage.PERMISSION,
        f"the API server refused {what}: {message}" if message else f"the API server refused {what} (403)",
        "grant it to the pod's service account (the chart's RBAC does for its own checks: rbac.create)",
    )


def unexpected(status: int, what: str, body: dict[str, Any]) -> CheckFailed:
    """An answer the kind does not expect, with the API's own message."""
    message = clean_remote_text(str(body.get("message", "")), 300)
    return CheckFailed(
        Stage.OPERATION,
        f"{what} answered HTTP {status}" + (f": {message}" if message else ""),
        "check the API server's log and the object's events",
    )


# Quantities (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/)
_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def quantity(text: str) -> float:
    """A Kubernetes quantity ('3800m', '16Gi', '1e3') as a number; raises ValueError for anything else."""
    text = str(text).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix) and text[: -len(suffix)]:
            return float(text[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(text)


Quantity = Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
