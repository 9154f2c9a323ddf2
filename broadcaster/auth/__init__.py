"""Access control without HTTP: tokens (PyJWT), the keys that verify them, grants and their coverage rule.

```python
verifier = TokenVerifier(Keyring.from_settings(settings), audience=settings.auth_audience)
identity = verifier.verify(token)            # raises InvalidToken(reason)
identity.grants.may_subscribe("sensors.*")   # the coverage rule: covers(grants, selector)
```

`broadcaster.http.security` reads tokens from requests and asks these; docs/security.md
describes the whole scheme.
"""

from __future__ import annotations

from ._grants import Grants, covers
from ._keys import Keyring
from ._tokens import ANONYMOUS, CLAIM, Identity, InvalidToken, TokenVerifier, issue_token
from .redaction import install_log_redaction, redact

__all__ = [
    "ANONYMOUS",
    "CLAIM",
    "Grants",
    "Identity",
    "InvalidToken",
    "Keyring",
    "TokenVerifier",
    "covers",
    "install_log_redaction",
    "issue_token",
    "redact",
]
