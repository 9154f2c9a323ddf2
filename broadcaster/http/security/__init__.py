"""Access control over HTTP: where tokens are read, CORS, the gate's policies, the session cookie.

The verification itself (keys, tokens, grants) is in `broadcaster.auth`, which knows no
HTTP. `policies_for_security(settings)` gives the gate its CORS and auth policies
(`http/policies.py`); docs/security.md describes the whole scheme.
"""

from __future__ import annotations

from .cors import Cors
from .credentials import COOKIE_NAME, Credential, find_credential
from .policy import TOKEN_EXPIRED, AuthPolicy, CorsPolicy, policies_for_security

__all__ = [
    "COOKIE_NAME",
    "TOKEN_EXPIRED",
    "AuthPolicy",
    "Cors",
    "CorsPolicy",
    "Credential",
    "find_credential",
    "policies_for_security",
]
