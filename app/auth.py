"""Who may use the dashboard and the API: one account from the settings, an argon2 password hash, signed
tokens (a Bearer token for scripts, the same token in an HttpOnly cookie for the browser) and login throttling.
Plain functions and classes: the FastAPI dependencies built on them are in app.web.deps.

A cookie is sent by the browser on its own, so every state change made with one must also carry the
session's CSRF token (header `X-CSRF-Token`, or the `csrf_token` field of a form). The token is a claim
of the signed session, so nobody can mint one without the secret key.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from app.config import Settings

ALGORITHM = "HS256"
SESSION_COOKIE = "testpod_session"
LOGIN_COOKIE = "testpod_login"  # the login form's CSRF token, before there is a session
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BAD_CREDENTIALS = "incorrect username or password"

_hasher = PasswordHash((Argon2Hasher(),))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


class LoginThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} s")
        self.retry_after = retry_after


class LoginRejected(Exception):
    """Wrong password or unknown user: deliberately the same failure."""


class LoginRequired(Exception):
    """A page was asked for without a valid session: the browser goes to the login page."""


class LoginThrottle:
    """Failed logins per key (a username at an address, an address): after `limit` within `window` seconds, wait.

    An attempt counts as a failure from the moment it starts and is forgiven only when it succeeds, so
    parallel guesses cannot slip past the limit while their password hashes are being checked.
    """

    def __init__(
        self,
        limit: int = 5,
        window: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.limit, self.window, self.clock, self.max_keys = limit, window, clock, max_keys
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def begin(self, keys: Iterable[str]) -> None:
        """Count an attempt against every key, or raise LoginThrottled if any key is over the limit."""
        now = self.clock()
        with self._lock:
            queues = [self._queue(key, now) for key in keys]
            waits = [q[0] + self.window - now for q in queues if len(q) >= self.limit]
            if waits:
                raise LoginThrottled(max(1, math.ceil(max(waits))))
            for queue in queues:
                queue.append(now)

    def succeeded(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._attempts.pop(key, None)

    def _queue(self, key: str, now: float) -> deque[float]:
        queue = self._attempts.get(key)
        if queue is None:
            if len(self._attempts) >= self.max_keys:
                self._forget_stale(now)
            queue = self._attempts[key] = deque(maxlen=self.limit)
        while queue and queue[0] <= now - self.window:
            queue.popleft()
        return queue

    def _forget_stale(self, now: float) -> None:
        """Bound the memory an address-spraying client can make us hold."""
        for key in [k for k, q in self._attempts.items() if not q or q[-1] <= now - self.window]:
            del self._attempts[key]
        while len(self._attempts) >= self.max_keys:
            del self._attempts[next(iter(self._attempts))]


@dataclass(frozen=True)
class User:
    name: str
    token_id: str
    expires: float
    csrf: str | None  # the session's CSRF token; None when the request came with a Bearer token


@dataclass(frozen=True)
class Issued:
    token: str  # the session's CSRF token travels inside it, as a signed claim
    max_age: int


@dataclass
class Authenticator:
    username: str
    password_hash: str | Future[str]  # a Future while a configured password is hashed off the start-up path
    secret_key: str
    session_seconds: int
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # Revocations live in memory, and the pod has no writable place that outlives it. So every token names the
    # process that issued it, and a restarted pod accepts none from before: a revoked token can never come back.
    generation: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    _revoked: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> tuple[Authenticator, str | None]:
        """The authenticator, and the password when none was configured and one was generated for this run."""
        generated = None
        password_hash: str | Future[str]
        if settings.auth_password_hash is not None:
            password_hash = settings.auth_password_hash.get_secret_value()
        else:
            if settings.auth_password is not None:
                password = settings.auth_password.get_secret_value()
            else:
                password = generated = secrets.token_urlsafe(18)
            password_hash = _hash_in_background(password)
        # without a configured key, sessions last until the process restarts: fine for one pod
        key = settings.secret_key.get_secret_value() if settings.secret_key else secrets.token_urlsafe(48)
        authenticator = cls(settings.auth_username, password_hash, key, settings.session_minutes * 60)
        return authenticator, generated

    def authenticate(self, username: str, password: str, client: str) -> None:
        """Raise LoginThrottled or LoginRejected; return when the credentials are right. Blocks ~0.2 s (argon2)."""
        # per username *at* an address, and per address: a guesser elsewhere cannot lock the admin out
        keys = (f"user:{username.lower()[:64]}@{client}", f"client:{client}")
        self.throttle.begin(keys)
        if not self.verify(username, password):
            raise LoginRejected(BAD_CREDENTIALS)
        self.throttle.succeeded(keys)

    @property
    def stored_hash(self) -> str:
        return self.password_hash if isinstance(self.password_hash, str) else self.password_hash.result()

    def verify(self, username: str, password: str) -> bool:
        # the hash is checked even for an unknown user, so timing does not tell which part was wrong
        try:
            password_ok = _hasher.verify(password, self.stored_hash)
        except Exception:  # a malformed hash must fail closed, not raise into the request
            password_ok = False
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        return password_ok and user_ok

    def issue(self) -> Issued:
        now = int(time.time())
        claims = {
            "sub": self.username,
            "iat": now,
            "exp": now + self.session_seconds,
            "jti": secrets.token_urlsafe(16),
            "csrf": secrets.token_urlsafe(32),
            "gen": self.generation,
        }
        return Issued(jwt.encode(claims, self.secret_key, algorithm=ALGORITHM), self.session_seconds)

    def read(self, token: str) -> User | None:
        """The user a token names, or None if it is forged, tampered, expired, revoked or for someone else."""
        try:
            claims = jwt.decode(
                token,
                self.secret_key,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "iat", "exp", "jti", "csrf", "gen"]},
            )
        except jwt.InvalidTokenError:
            return None
        if claims["sub"] != self.username or claims["gen"] != self.generation or claims["jti"] in self._revoked:
            return None
        return User(claims["sub"], claims["jti"], float(claims["exp"]), claims["csrf"])

    def revoke(self, user: User) -> None:
        """Logout, or DELETE /api/token: the token stops working now, not when it expires nor after a restart."""
        now = time.time()
        for token_id in [t for t, expires in self._revoked.items() if expires < now]:
            del self._revoked[token_id]
        self._revoked[user.token_id] = user.expires


def _hash_in_background(password: str) -> Future[str]:
    """argon2 costs ~0.2 s of CPU: spend it while the server starts, not before it listens."""
    future: Future[str] = Future()

    def work() -> None:
        try:
            future.set_result(hash_password(password))
        except BaseException as error:  # handed to whoever waits; a login then fails closed
            future.set_exception(error)

    threading.Thread(target=work, name="hash-password", daemon=True).start()
    return future
