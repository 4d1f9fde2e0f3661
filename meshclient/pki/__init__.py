"""Pure X.509 work: parse PEM/DER/PKCS#8, build and check chains, profile checks.

One module per job (``pem``, ``keys``, ``certinfo``, ``chain``, ``profile``); the public names
are re-exported here, so ``from meshclient.pki import X`` is the way in.

Nothing here touches the network or ``ssl``. Every failure is a :class:`CredentialsError`
subclass whose message names the material (``where``: a file, a variable, an argument) and
whose hint says what to do. No message ever quotes key bytes, key-slot text or a password:
only certificate names, dates, sizes and labels, which are public.

Works with cryptography 41 (Databricks Runtime 15.4) and newer: ``*_utc`` date properties
are used only when present.
"""

from __future__ import annotations

from ._common import PrivateKey
from .certinfo import (
    certs_to_pem,
    check_validity,
    describe,
    fingerprint,
    identity_of,
    identity_sans,
    not_after,
    not_before,
)
from .chain import ChainResult, build_chain, check_end_entity, is_self_signed
from .keys import check_key_matches, key_to_pem, load_private_key
from .pem import load_certificates
from .profile import check_leaf_profile, linkerd_profile_notes

__all__ = [
    "PrivateKey",
    "load_certificates",
    "load_private_key",
    "identity_of",
    "identity_sans",
    "fingerprint",
    "not_before",
    "not_after",
    "check_validity",
    "check_key_matches",
    "check_end_entity",
    "build_chain",
    "check_leaf_profile",
    "linkerd_profile_notes",
    "describe",
    "certs_to_pem",
    "key_to_pem",
    "is_self_signed",
    "ChainResult",
]
