"""The keyring: the verification keys of the settings, each bound to the one algorithm it serves.

The accepted algorithms follow from the configured keys and nothing else:

| setting | key | algorithm |
| --- | --- | --- |
| `auth_secret` / `auth_secret_file`, `auth_previous_secret` | a shared secret (at least 32 bytes) | HS256 |
| `auth_public_key` (PEM files) | RSA (at least 2048 bits) | RS256 |
| | EC on P-256 | ES256 |
| | Ed25519 | EdDSA |

A token's `alg` header only selects among these; an algorithm without a configured key
(`none` included) is refused before any verification. That is what stops algorithm
confusion: an HS256 token "signed" with an RSA public key's bytes is checked against the
HS256 secrets only (or refused when none is configured), never with the public key as a
secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .._config import Settings
from .._exceptions import ConfigError

#: Shortest HS256 secret accepted, in bytes (RFC 7518 3.2: at least the hash size).
MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
HMAC_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Key:
    """One verification key and the only algorithm it verifies; `name` says where it came from (no secret)."""

    algorithm: str
    key: Any
    name: str


class Keyring:
    """The keys of the settings, grouped by algorithm. Raises `ConfigError` for a bad or unreadable key."""

    def __init__(self, keys: list[Key], *, signing_secret: bytes | None = None) -> None:
        self.keys = keys
        #: The current HS256 secret (what `broadcaster token` signs with), or None.
        self.signing_secret = signing_secret
        self.by_algorithm: dict[str, list[Key]] = {}
        for key in keys:
            self.by_algorithm.setdefault(key.algorithm, []).append(key)

    @property
    def algorithms(self) -> list[str]:
        """The accepted algorithms, sorted."""
        return sorted(self.by_algorithm)

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        keys: list[Key] = []
        secret = current_secret(settings)
        if secret is not None:
            keys.append(_secret_key(secret, "auth_secret_file" if settings.auth_secret_file else "auth_secret"))
        if settings.auth_previous_secret:
            keys.append(_secret_key(settings.auth_previous_secret.encode(), "auth_previous_secret"))
        for path in settings.auth_public_key:
            keys.append(_public_key(path))
        return cls(keys, signing_secret=secret)


def current_secret(settings: Settings) -> bytes | None:
    """The HS256 secret: `auth_secret`, or the contents of `auth_secret_file` without the trailing newline."""
    if settings.auth_secret_file:
        try:
            text = Path(settings.auth_secret_file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"auth_secret_file: cannot read {settings.auth_secret_file}: {exc.strerror}") from None
        return text.rstrip(b"\r\n")
    if settings.auth_secret:
        return settings.auth_secret.encode()
    return None


def _secret_key(secret: bytes, name: str) -> Key:
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{name} is {len(secret)} bytes long; an HS256 secret needs at least {MIN_SECRET_BYTES} "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    return Key(HMAC_ALGORITHM, secret, name)


def _public_key(path: str) -> Key:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"auth_public_key: cannot read {path}: {exc.strerror}") from None
    try:
        key = load_pem_public_key(pem)
    except ValueError:
        raise ConfigError(f"auth_public_key: {path} is not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(f"auth_public_key: {path} is a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS}")
        return Key("RS256", key, path)
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(f"auth_public_key: {path} is on curve {key.curve.name}; ES256 needs P-256")
        return Key("ES256", key, path)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return Key("EdDSA", key, path)
    raise ConfigError(f"auth_public_key: {path} holds a {type(key).__name__}; use RSA, EC P-256 or Ed25519")
