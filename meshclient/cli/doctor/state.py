"""What doctor has found so far: each check records the pieces later checks build on.

Doctor never stops at the first failure, so the checks are split by concern (secret scope,
material, token, live peer) into mixins over this one state; a check whose input is missing
shows as skipped rather than hidden.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from collections.abc import Mapping

from cryptography import x509

from ... import pki
from ...identity import Identity
from ...tokens import Token, TokenProvider
from ..common import Found
from .report import Report

__all__ = ["CheckupState"]


class CheckupState:
    """The command's inputs and the parsed material, identity and token, as far as they went."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], report: Report,
                 now: _dt.datetime) -> None:
        self.args = args
        self.env = environ
        self.r = report
        self.now = now
        self.where: dict[str, str] = {}
        self.leaf: x509.Certificate | None = None
        self.intermediates: list[x509.Certificate] = []
        self.anchors: list[x509.Certificate] | None = None
        self.key: pki.PrivateKey | None = None
        self.identity: Identity | None = None
        self.scope_found: dict[str, Found] | None = None  # with --secret-scope: what could be read
        self.token_provider: TokenProvider | None = None
        self.token: Token | None = None
