"""``meshclient doctor``: check the mesh material one item at a time, then optionally a live peer.

Doctor is for when things are broken, so it never stops at the first exception: it parses
each item on its own and runs the individual checks of :mod:`meshclient.pki`, printing one
line per check and the fix under each failure. Checks that need a failed item are shown as
skipped rather than hidden.

With ``--secret-scope`` it first reports the workspace and each secret read (scope, key and
size, never content); with a token option it reports the issuer, the token's subject,
audience and expiry, and whether the live request carried it. No secret, key or token text
is ever printed (a token is named by its SHA-256 fingerprint).

Modules, one concern each: :mod:`.command` (options and order), :mod:`.report` (the
lines), :mod:`.secret_scope`, :mod:`.material`, :mod:`.token_checks`, :mod:`.live`.
"""

from .command import register, run
from .material import WARN_FRACTION
from .report import Report

__all__ = ["register", "run", "Report", "WARN_FRACTION"]
