"""Gate tokens: API tokens that can read the readiness gate and nothing else, for a CI secret.

They are random strings, not session JWTs, so no other route can ever accept one (`Authenticator.read`
does not parse them). Only their SHA-256 digest is kept; the token itself is shown once, when the admin
creates it. Revoking deletes the digest, so the token stops working at once. With persistence on, the
digests live in the embedded database and tokens survive restarts; without it they end with the process. A
creation or revocation the volume refuses changes nothing and says so (TokenNotSaved): a revoked token must not
come back with the next restart.
Each token's last use is kept to the minute, so a CI job polling the gate costs one write a minute at most.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

if TYPE_CHECKING:
    from app.store import Store

PREFIX = "tpgate_"  # recognisable in a leaked-secret scan
MAX_TOKENS = 100
USE_RESOLUTION = timedelta(minutes=1)  # how exactly a token's last use is kept

MAX_NAME = 63
TokenName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
]
NAME_RULE = (
    f"A name is 1 to {MAX_NAME} characters: letters, digits, spaces, dots, underscores and hyphens, "
    "starting with a letter or a digit."
)


class GateToken(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None = None  # to the minute (USE_RESOLUTION)


class TooManyTokens(Exception):
    pass


class TokenNotSaved(Exception):
    """The pod's volume refused a token's creation or revocation; nothing changed."""


class GateTokens:
    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self._by_digest: dict[str, GateToken] = store.load_tokens() if store is not None else {}

    async def create(self, name: str) -> tuple[GateToken, str]:
        """A new token and its secret (returned once, never stored)."""
        if len(self._by_digest) >= MAX_TOKENS:
            raise TooManyTokens(f"{MAX_TOKENS} gate tokens exist already; revoke unused ones first")
        secret = PREFIX + secrets.token_urlsafe(32)
        token = GateToken(id=secrets.token_hex(8), name=name, created_at=datetime.now().astimezone())
        digest = _digest(secret)
        if self.store is not None:
            await _saved(self.store.save_token(digest, token), "created")
        self._by_digest[digest] = token
        return token, secret

    def list(self) -> list[GateToken]:
        return sorted(self._by_digest.values(), key=lambda t: t.created_at)

    async def revoke(self, token_id: str) -> bool:
        for digest, token in list(self._by_digest.items()):
            if token.id == token_id:
                if self.store is not None:
                    await _saved(self.store.delete_token(token_id), "revoked")
                self._by_digest.pop(digest, None)
                return True
        return False

    def verify(self, secret: str) -> GateToken | None:
        if not secret.startswith(PREFIX):
            return None
        # a dict lookup by digest: the comparison runs on a hash, so its timing tells nothing about the token
        digest = _digest(secret)
        token = self._by_digest.get(digest)
        if token is None:
            return None
        now = datetime.now().astimezone()
        if token.last_used_at is None or now - token.last_used_at >= USE_RESOLUTION:
            token = self._by_digest[digest] = token.model_copy(update={"last_used_at": now})
            if self.store is not None:
                self.store.update_token(token)
        return token


async def _saved(write: Future[None], action: str) -> None:
    try:
        await asyncio.wrap_future(write)
    except Exception as error:
        raise TokenNotSaved(
            f"the gate token was not {action}: the pod's volume refused the change ({error}); nothing changed"
        ) from None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
