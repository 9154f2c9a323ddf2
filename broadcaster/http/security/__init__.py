"""Access control over HTTP: where tokens are read, CORS, the policy the gate applies, the session cookie.

The verification itself (keys, tokens, grants) is in `broadcaster.auth`, which knows no
HTTP. `AccessPolicy.admit(scope)` is what the gate calls for every request.
"""

from __future__ import annotations

from .cors import CorsPolicy
from .credentials import COOKIE_NAME, Credential, find_credential
from .policy import AccessPolicy, Admission, Need, requirement

__all__ = [
    "COOKIE_NAME",
    "AccessPolicy",
    "Admission",
    "CorsPolicy",
    "Credential",
    "Need",
    "find_credential",
    "requirement",
]
