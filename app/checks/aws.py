"""What the AWS kinds (s3, bedrock) share: a botocore session on the probe's clock and the credentials to sign with.

Static keys or the pod's credential chain (IRSA, environment, instance role). The chain is resolved in its own
step before any request, so that its failure (a role it may not assume, STS unreachable) is named as such. The
service models are loaded once per process and shared by every check's session.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import SecretStr, StringConstraints

from app.checks import facts
from app.checks.base import CheckFailed, Probe, Stage
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    from botocore.loaders import Loader
    from botocore.session import Session

AccessKeyId = Annotated[str, StringConstraints(pattern=r"^\S{1,128}$")]


def check_keys(access_key_id: str | None, secret_access_key: SecretStr | None, session_token: SecretStr | None) -> None:
    """Static keys come as a pair (a session token only with them); none at all means the pod's chain."""
    if (access_key_id is None) != (secret_access_key is None):
        raise ValueError(
            "access_key_id and secret_access_key go together; leave both out to use the pod's AWS "
            "credential chain (IRSA, environment, instance role)"
        )
    if session_token is not None and access_key_id is None:
        raise ValueError("session_token needs access_key_id and secret_access_key")


def session(
    probe: Probe, access_key_id: str | None, secret_access_key: SecretStr | None, session_token: SecretStr | None
) -> Session:
    """A botocore session whose own clients (STS for a web identity) give up with the probe and never retry."""
    import botocore.session
    from botocore.config import Config

    _quiet_botocore_debug()
    made = botocore.session.Session()
    # inherited by the clients botocore creates on its own, such as STS for a web identity (IRSA), which would
    # otherwise wait 60 s per read and try 5 times
    remaining = probe.remaining()
    made.set_default_client_config(
        Config(connect_timeout=remaining, read_timeout=remaining, retries={"total_max_attempts": 1})
    )
    made.register_component("data_loader", _shared_loader())
    if access_key_id and secret_access_key:
        token = session_token.get_secret_value() if session_token else None
        made.set_credentials(access_key_id, secret_access_key.get_secret_value(), token)
    return made


def credentials(probe: Probe, made: Session, explicit: bool) -> None:
    """Resolve the credentials to sign with (inside an auth step) and record where they came from."""
    try:
        found = made.get_credentials()
        if found is not None:
            found.get_frozen_credentials()
    except Exception as error:
        raise CheckFailed(
            Stage.AUTH,
            f"the pod's AWS credential chain failed: {clean_remote_text(str(error))}",
            "check the role the pod assumes (IRSA: the ServiceAccount annotation and the role's trust policy) and "
            "that the pod may reach STS (sts.<region>.amazonaws.com, or an STS VPC endpoint)",
        ) from None
    if found is None:
        raise CheckFailed(
            Stage.AUTH,
            "no AWS credentials: none are configured and the pod's credential chain found none",
            "set access_key_id and secret_access_key, or give the pod a role: with IRSA, annotate its "
            "ServiceAccount with eks.amazonaws.com/role-arn",
        )
    probe.facts[facts.CREDENTIALS] = "explicit" if explicit else str(getattr(found, "method", "") or "unknown")


@contextlib.contextmanager
def client(
    made: Session,
    service: str,
    *,
    region: str,
    endpoint_url: str | None,
    timeout: float,
    verify: bool | str,
    **config: Any,
) -> Iterator[Any]:
    """A client whose every socket gives up after `timeout`, that never retries on its own; closed after use.

    botocore fixes timeouts per client, so each request gets its own with the time then left.
    """
    from botocore.config import Config

    settings = Config(
        connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1, "mode": "standard"}, **config
    )
    made_client = made.create_client(
        service, region_name=region, endpoint_url=endpoint_url, config=settings, verify=verify
    )
    with contextlib.closing(made_client):
        yield made_client


@functools.cache
def _shared_loader() -> Loader:
    """botocore's JSON service models, parsed once: a fresh session would spend ~0.2 s of CPU on them per check."""
    from botocore.loaders import create_loader

    return create_loader()


def parse_s3_models() -> None:
    """Warm-up before the first run of an s3 target (see runner.warm_up)."""
    _parse_models("s3")


def parse_bedrock_models() -> None:
    """Warm-up before the first run of a bedrock target (see runner.warm_up)."""
    _parse_models("bedrock-runtime")


def _parse_models(service: str) -> None:
    """Parse a service's model and endpoint rules into the shared loader, so the first check does not stall the
    event loop on them. No request is sent and the credential chain is never consulted."""
    import botocore.session

    made = botocore.session.Session()
    made.register_component("data_loader", _shared_loader())
    keys = {"aws_access_key_id": "warm-up", "aws_secret_access_key": "warm-up"}
    made.create_client(service, region_name="us-east-1", **keys).close()


def _quiet_botocore_debug() -> None:
    """botocore's DEBUG records hold signed request headers, session tokens included: never let them through."""
    logger = logging.getLogger("botocore")
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)
