"""Who a client acts as, when its caller does not say: recorded on aborts and launches."""

from __future__ import annotations

import getpass
import socket


def default_principal() -> str:
    """``user@host`` of this process (``unknown@host`` when the user has no name, as in some containers)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
