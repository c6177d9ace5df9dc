"""registry: the private image registry (OCI distribution API) serves the images the platform will pull.

`/v2/` answers; its challenge is met (Basic, or the bearer token flow: realm, service, scope) with credentials
from the `kubernetes.io/dockerconfigjson` Secret the platform's pods use (or username/password); each image
reference resolves to a digest, and a multi-arch index holds the platforms the nodes need. A missing repository,
tag or platform, a denied pull and a rate limit (429, with the registry's own limit headers) are named.
Requests go through open_client/exchange, so the proxy and the CA bundle apply as for http.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import AfterValidator, Field, FilePath, SecretStr, model_validator

from app.checks.base import CheckFailed, Probe, Stage, Target
from app.checks.http import Answer, HttpUrl, exchange, open_client
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    import httpx

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
RATE_LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "retry-after", "x-ratelimit-limit")
_REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
_CHALLENGE_PARAM = re.compile(
    r'(?<!\w)(\w++)="([^"]*)"'
)  # a name starts where a word starts: linear in a hostile header


def _reference(value: str) -> str:
    if not _REFERENCE.match(value):
        raise ValueError("must be a repository with a tag or digest, without the registry host (e.g. airia/api:1.4)")
    return value


def _platform(value: str) -> str:
    if not _PLATFORM.match(value):
        raise ValueError("must be os/architecture[/variant] (e.g. linux/amd64, linux/arm64/v8)")
    return value


class RegistryTarget(Target):
    default_timeout: ClassVar[float] = 20.0
    warm_imports: ClassVar[tuple[str, ...]] = ("httpx",)

    kind: Literal["registry"]
    url: HttpUrl  # https://registry.example.com (the API is at /v2/)
    images: list[Annotated[str, AfterValidator(_reference)]] = Field(default_factory=list)
    platforms: list[Annotated[str, AfterValidator(_platform)]] = Field(default_factory=lambda: ["linux/amd64"])
    # a .dockerconfigjson, as the chart mounts the pull Secret; read at check time (a Secret mounted later counts)
    docker_config: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_file: FilePath | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> RegistryTarget:
        if self.docker_config is not None and (self.username or self.password):
            raise ValueError("give docker_config or username/password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    def secrets(self) -> list[str]:
        try:
            user, password = self._credentials()
        except CheckFailed:  # an unusable docker config holds no credentials to hide; the check says why
            user, password = "", ""
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode() if user else ""
        return [*super().secrets(), *(value for value in (password, encoded) if value)]

    def check(self, probe: Probe) -> None:
        base = self.url.rstrip("/")
        probe.facts["registry"] = urlsplit(base).netloc
        with open_client(probe, self.ca_file) as client:
            session = _Session(probe, client, base, self._credentials())
            session.login()
            for image in self.images:
                self._image(probe, session, image)

    def _credentials(self) -> tuple[str, str]:
        """User and password: the fields, or the docker config's entry for this registry; ("", "") for none."""
        if self.username is not None and self.password is not None:
            return self.username, self.password.get_secret_value()
        if self.docker_config is None:
            return "", ""
        host = urlsplit(self.url).netloc
        if not self.docker_config.is_file():
            raise CheckFailed(
                Stage.AUTH,
                f"docker_config {self.docker_config} does not exist",
                "mount the pull Secret (the chart's registryCredentials.secret mounts it at "
                "/etc/airia-test-pod/registry/.dockerconfigjson)",
            )
        try:
            auths = json.loads(self.docker_config.read_text()).get("auths", {})
        except (OSError, ValueError, AttributeError) as error:
            raise CheckFailed(
                Stage.AUTH,
                f"docker_config {self.docker_config} is not a .dockerconfigjson ({type(error).__name__})",
                "mount the kubernetes.io/dockerconfigjson Secret's .dockerconfigjson key (a JSON object with auths)",
            ) from None
        entry = next((auths[key] for key in auths if _registry_host(key) == host), None)
        if not isinstance(entry, dict):
            raise CheckFailed(
                Stage.AUTH,
                f"docker_config has no credentials for {host} (it has {', '.join(map(str, auths)) or 'none'})",
                f"create the pull Secret for {host}: kubectl create secret docker-registry --docker-server={host} ...",
            )
        if entry.get("auth"):
            user, _, password = base64.b64decode(str(entry["auth"])).decode(errors="replace").partition(":")
            return user, password
        return str(entry.get("username", "")), str(entry.get("password", ""))

    def _image(self, probe: Probe, session: _Session, image: str) -> None:
        match = _REFERENCE.match(image)
        assert match is not None  # by the validator
        name, reference = match["name"], match["digest"] or match["tag"] or "latest"
        scope = f"repository:{name}:pull"
        answer = session.get(f"/v2/{name}/manifests/{reference}", scope=scope)
        tags = session.get(f"/v2/{name}/tags/list?n=20", scope=scope) if answer.status == 404 else None
        with probe.step(f"manifest {image}", Stage.OPERATION):
            if answer.status != 200:
                raise _manifest_failure(image, name, reference, answer, tags)
            digest = answer.headers.get("docker-content-digest") or f"sha256:{hashlib.sha256(answer.body).hexdigest()}"
            probe.facts[f"digest {image}"] = clean_remote_text(digest, 80)
            document = _json(answer)
            media_type = str(document.get("mediaType") or answer.headers.get("content-type", "")).split(";")[0]
            if media_type in INDEX_TYPES:
                offered = [_platform_of(entry.get("platform") or {}) for entry in document.get("manifests") or []]
                probe.facts[f"platforms {image}"] = ", ".join(offered)
                missing = [p for p in self.platforms if not any(_covers(o, p) for o in offered)]
                if missing:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"{image} has no image for {', '.join(missing)} "
                        f"(its index offers {', '.join(offered) or 'none'})",
                        "push the image for the nodes' platform (docker buildx --platform ...), or schedule the "
                        "platform on nodes of a platform it offers",
                    )
                probe.note(f"{digest[:19]}…, index with {', '.join(offered)}")
            else:
                probe.note(f"{digest[:19]}…, single-platform manifest")


class _Session:
    """Requests to one registry, answering its auth challenge once per scope (Basic, or a bearer token)."""

    def __init__(self, probe: Probe, client: httpx.Client, base: str, credentials: tuple[str, str]) -> None:
        self.probe, self.client, self.base = probe, client, base
        self.user, self.password = credentials
        self.challenge: tuple[str, dict[str, str]] | None = None
        self.tokens: dict[str, str] = {}

    def login(self) -> None:
        answer = exchange(self.probe, self.client, "GET", f"{self.base}/v2/")
        with self.probe.step("api", Stage.OPERATION):
            if answer.status not in (200, 401):
                _raise_for_rate_limit(answer)
                raise CheckFailed(
                    Stage.OPERATION,
                    f"/v2/ answers HTTP {answer.status} {answer.reason}: {answer.snippet or '(empty)'}",
                    "the URL does not lead to an OCI registry (the distribution API lives at /v2/): check it",
                )
            self.probe.note(f"HTTP {answer.status}, {answer.headers.get('docker-distribution-api-version', '')}")
        if answer.status == 200:
            self.probe.facts["registry_auth"] = "none"
            return
        scheme, params = _challenge(answer)
        self.challenge = (scheme, params)
        self.probe.facts["registry_auth"] = scheme.lower()
        retry = self.get("/v2/", scope="")
        with self.probe.step("login", Stage.AUTH):
            if retry.status != 200:
                _raise_for_rate_limit(retry)
                raise CheckFailed(
                    Stage.AUTH,
                    f"the registry refuses the credentials{self._whose()}: HTTP {retry.status} {_errors(retry)}",
                    "check the pull Secret's user and password (or token) for this registry",
                )
            self.probe.note(f"{scheme} as {self.user or 'anonymous'}")

    def get(self, path: str, *, scope: str) -> Answer:
        headers = {"Accept": MANIFEST_TYPES}
        if self.challenge is not None:
            headers["Authorization"] = self._authorization(scope)
        return exchange(self.probe, self.client, "GET", f"{self.base}{path}", headers=headers)

    def _authorization(self, scope: str) -> str:
        assert self.challenge is not None
        scheme, params = self.challenge
        basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if scheme.lower() == "basic":
            return f"Basic {basic}"
        if scope not in self.tokens:
            self.tokens[scope] = self._token(params, scope, basic)
        return f"Bearer {self.tokens[scope]}"

    def _token(self, params: dict[str, str], scope: str, basic: str) -> str:
        """A bearer token from the challenge's realm, for `scope` ("" for login)."""
        query = {"service": params.get("service", "")} | ({"scope": scope} if scope else {})
        realm = params.get("realm", "")
        if urlsplit(realm).scheme not in ("http", "https"):
            raise CheckFailed(
                Stage.AUTH,
                f"the registry's bearer challenge names no usable token realm ({clean_remote_text(realm, 80)!r})",
                "check the registry's token auth configuration (auth.token.realm)",
            )
        headers = {"Authorization": f"Basic {basic}"} if self.user else {}
        answer = exchange(self.probe, self.client, "GET", f"{realm}?{urlencode(query)}", headers=headers)
        with self.probe.step(f"token {scope or 'login'}", Stage.AUTH):
            if answer.status != 200:
                _raise_for_rate_limit(answer)
                raise CheckFailed(
                    Stage.AUTH,
                    f"the token service {urlsplit(realm).netloc} refuses the credentials{self._whose()}: "
                    f"HTTP {answer.status} {answer.snippet}",
                    "check the pull Secret's user and password (or token) for this registry",
                )
            document = _json(answer)
            token = document.get("token") or document.get("access_token")
            if not isinstance(token, str) or not token:
                raise CheckFailed(
                    Stage.AUTH,
                    "the token service answered without a token",
                    'check the token service (it must answer {"token": ...})',
                )
            self.probe.note(f"token for {scope or 'login'}")
        return token

    def _whose(self) -> str:
        return f" of {self.user}" if self.user else " (anonymous: no credentials configured)"


def _challenge(answer: Answer) -> tuple[str, dict[str, str]]:
    header = answer.headers.get("www-authenticate", "")
    scheme, _, rest = header.partition(" ")
    if scheme.lower() not in ("basic", "bearer"):
        raise CheckFailed(
            Stage.AUTH,
            f"/v2/ wants authentication but names no Basic or Bearer challenge ({clean_remote_text(header, 80)!r})",
            "check the registry's auth configuration",
        )
    return scheme.capitalize(), dict(_CHALLENGE_PARAM.findall(rest))


def _raise_for_rate_limit(answer: Answer) -> None:
    if answer.status != 429:
        return
    limits = ", ".join(
        f"{name}: {clean_remote_text(answer.headers[name], 40)}"
        for name in RATE_LIMIT_HEADERS
        if name in answer.headers
    )
    raise CheckFailed(
        Stage.OPERATION,
        f"the registry rate-limits this client (HTTP 429{f'; {limits}' if limits else ''})",
        "pull through a mirror or cache inside the network, or authenticate with an account whose limit is higher",
    )


def _manifest_failure(image: str, name: str, reference: str, answer: Answer, tags: Answer | None) -> CheckFailed:
    """Why a manifest did not come; `tags` is the repository's tag list, asked for after a 404."""
    _raise_for_rate_limit(answer)
    if answer.status == 404 and tags is not None and tags.status == 404:
        return CheckFailed(
            Stage.OPERATION,
            f"the repository {name} does not exist in the registry",
            "push (or mirror) the platform's images to it: check the repository path and the mirror's sync",
        )
    if answer.status == 404:
        listed = _json(tags).get("tags") if tags is not None else None
        some = ", ".join(clean_remote_text(str(tag), 40) for tag in (listed or [])[:10]) or "none"
        return CheckFailed(
            Stage.OPERATION,
            f"{image}: the tag or digest {reference} does not exist in {name} (it has {some})",
            "push (or mirror) this version: the chart's image tags must exist in the private registry",
        )
    if answer.status in (401, 403):
        return CheckFailed(
            Stage.PERMISSION,
            f"pulling {name} is denied: HTTP {answer.status} {_errors(answer)}",
            f"grant the pull Secret's account read (pull) access to {name}",
        )
    return CheckFailed(
        Stage.OPERATION,
        f"{image}: HTTP {answer.status} {answer.reason}: {_errors(answer) or answer.snippet}",
        "check the registry's log",
    )


def _errors(answer: Answer) -> str:
    """The registry's error codes and messages (the distribution API's {"errors": [...]})."""
    errors = [e for e in _json(answer).get("errors") or [] if isinstance(e, dict)]
    return clean_remote_text("; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors), 200)


def _json(answer: Answer) -> dict[str, Any]:
    try:
        document = json.loads(answer.body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _registry_host(key: str) -> str:
    """A docker config's auths key ("registry:5000", "https://registry:5000/v1/") as host[:port]."""
    return urlsplit(key if "://" in key else f"https://{key}").netloc


def _platform_of(platform: dict[str, Any]) -> str:
    parts = [str(platform.get("os", "")), str(platform.get("architecture", ""))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return clean_remote_text("/".join(parts), 40)


def _covers(offered: str, wanted: str) -> bool:
    """linux/arm64 in an index serves a node asking for linux/arm64/v8, and the reverse."""
    return offered == wanted or (
        offered.split("/")[:2] == wanted.split("/")[:2]
        and (len(offered.split("/")) == 2 or len(wanted.split("/")) == 2)
    )
