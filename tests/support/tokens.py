"""Tokens and keys for tests: real JWTs (PyJWT), real key pairs (cryptography), and hand-forged attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

SECRET = "test-secret-0123456789-abcdefghijklmnop"
PREVIOUS_SECRET = "previous-secret-0123456789-abcdefghijkl"


def claims(*, subscribe=(), publish=(), admin=False, ttl_s: float = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iat": now,
        "exp": now + ttl_s,
        "broadcaster": {"subscribe": list(subscribe), "publish": list(publish), "admin": admin},
    }
    payload.update(extra)
    return {k: v for k, v in payload.items() if v is not None}


def hs256(secret: str = SECRET, **kwargs: Any) -> str:
    return jwt.encode(claims(**kwargs), secret, algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token PyJWT would refuse to make: `alg: none`, or HS256 keyed with a public key's PEM bytes."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


class KeyPair:
    """A private key, its PEM public key written to `path`, and the algorithm it signs with."""

    def __init__(self, algorithm: str, directory: Path) -> None:
        if algorithm == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
        self.algorithm = algorithm
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.path = directory / f"{algorithm.lower()}-{id(self)}.pem"
        self.path.write_bytes(self.public_pem)

    def sign(self, **kwargs: Any) -> str:
        return jwt.encode(claims(**kwargs), self.private, algorithm=self.algorithm)
