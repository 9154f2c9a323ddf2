"""The policies a server's gate runs, chosen from its settings: where access control and limits plug in.

Add a policy here (built from `settings`, in the order it must run: CORS headers first,
so that a later refusal carries them; then identity and grants; then limits). Neither
lane changes: `ServerApp` asks the gate about every request. See `http/gate.py` for
the interface (`Policy`, `Decision`, `Refused`).
"""

from __future__ import annotations

from .._config import Settings
from ..auth import install_log_redaction
from .gate import Policy
from .limits.admission import Admission, AdmissionPolicy
from .security import policies_for_security


def policies_for(settings: Settings, *, admission: Admission | None = None) -> list[Policy]:
    """The gate's policies for `settings`: CORS, then access control (each only when configured),
    then the admission caps (they count per identity, so they come after it).

    Also makes sure that no token, cookie or configured secret reaches this process's log.
    """
    install_log_redaction([settings.auth_secret, settings.auth_previous_secret])
    limits = [AdmissionPolicy(admission)] if admission is not None else []
    return [*policies_for_security(settings), *limits]
