"""Verifying and issuing tokens: JWTs with `exp` and the `broadcaster` grants claim (PyJWT).

A token is verified once, when its connection is admitted; a stream then ends at its
`exp` by itself (the gate hands the stream that deadline), so nothing is verified per event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from .._exceptions import BroadcasterError
from ._grants import Grants
from ._keys import HMAC_ALGORITHM, Key, Keyring

#: Longest token read, in characters: a bound on the work one request can ask for.
MAX_TOKEN_CHARS = 8192
#: Verified tokens remembered (exact bytes, signature included), so that a publisher that sends the
#: same token with every POST costs one verification, not one per request.
MAX_CACHED_TOKENS = 1024
CLAIM = "broadcaster"


class InvalidToken(BroadcasterError):
    """A token was sent and failed verification; `reason` is a short phrase for `error_description`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"invalid token: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking: a verified token's `sub`, grants and `exp` (Unix seconds), or nobody in particular.

    A request without a token has the identity `ANONYMOUS` (or one with the grants of
    `anonymous_subscribe`): no subject, no expiry.
    """

    subject: str | None
    grants: Grants
    expires_at: float | None = None

    def adding_subscribe(self, patterns: Sequence[str]) -> Identity:
        """This identity, also granted subscribe on `patterns`."""
        grants = self.grants.adding_subscribe(patterns)
        return self if grants is self.grants else Identity(self.subject, grants, self.expires_at)


#: Nobody: a request without a token, on a server without `anonymous_subscribe`.
ANONYMOUS = Identity(None, Grants())


# PyJWT's exceptions in the order to test them (subclasses before their bases).
_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAlgorithmError, "unsupported algorithm"),
]


class TokenVerifier:
    """Verifies tokens against a `Keyring`; `audience` and `issuer` are checked when set.

    `verify` returns an `Identity` or raises `InvalidToken`. The algorithm comes from the
    keyring: the token's `alg` header only picks which configured keys to try.
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        self.keyring = keyring
        self.audience = audience
        self.issuer = issuer
        required = ["exp"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
        self._jwt = jwt.PyJWT({"require": required})
        self._verified: dict[str, Identity] = {}

    def verify(self, token: str) -> Identity:
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at is not None and known.expires_at <= time.time():
                del self._verified[token]
                raise InvalidToken("expired")
            return known
        identity = self._verify(token)
        if len(self._verified) >= MAX_CACHED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = identity
        return identity

    def _verify(self, token: str) -> Identity:
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("malformed", f"longer than {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise InvalidToken("malformed", "not a JWT") from None
        algorithm = header.get("alg")
        keys = self.keyring.by_algorithm.get(algorithm) if isinstance(algorithm, str) else None
        if not keys or not isinstance(algorithm, str):
            accepted = ", ".join(self.keyring.algorithms)
            raise InvalidToken("unsupported algorithm", f"{str(algorithm)[:20]!r}; this server accepts {accepted}")
        payload = self._decode(token, algorithm, keys)
        try:
            grants = Grants.from_claim(payload.get(CLAIM))
        except ValueError as exc:
            raise InvalidToken("malformed", str(exc)) from None
        subject = payload.get("sub")
        return Identity(subject if isinstance(subject, str) else None, grants, float(payload["exp"]))

    def _decode(self, token: str, algorithm: str, keys: Sequence[Key]) -> dict[str, Any]:
        failure: Exception | None = None
        for key in keys:
            try:
                payload: dict[str, Any] = self._jwt.decode(
                    token,
                    key.key,
                    algorithms=[algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                )
                return payload
            except jwt.InvalidSignatureError as exc:
                failure = exc  # a rotated key: try the next one
            except jwt.PyJWTError as exc:
                raise _invalid(exc) from None
        assert failure is not None
        raise _invalid(failure) from None


def _invalid(exc: Exception) -> InvalidToken:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return InvalidToken(reason)
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return InvalidToken("malformed", f"no {exc.claim} claim")
    return InvalidToken("malformed", str(exc)[:100])


def issue_token(
    secret: bytes,
    *,
    subscribe: Sequence[str] = (),
    publish: Sequence[str] = (),
    admin: bool = False,
    ttl_s: float = 3600.0,
    subject: str | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """An HS256 token with these grants, valid for `ttl_s` seconds (what `broadcaster token` prints).

    Raises `ValueError` for an invalid pattern or a ttl that is not positive.
    """
    if not ttl_s > 0:
        raise ValueError(f"the ttl must be positive, got {ttl_s!r}")
    claim = {"subscribe": list(subscribe), "publish": list(publish), "admin": admin}
    Grants.from_claim(claim)  # the same validation a server applies
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {"iat": issued, "exp": issued + max(1, round(ttl_s)), CLAIM: claim}
    for name, value in (("sub", subject), ("aud", audience), ("iss", issuer)):
        if value:
            payload[name] = value
    return jwt.encode(payload, secret, algorithm=HMAC_ALGORITHM)
