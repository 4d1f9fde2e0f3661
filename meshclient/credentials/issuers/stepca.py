"""smallstep step-ca as a certificate issuer: ``POST /1.0/sign`` with a provisioner token.

The OIDC (or JWK) provisioner token travels as ``ott`` next to the CSR; step-ca's
``{"message": ...}`` answers become :class:`IssuanceError` with the provisioner setting to check.
"""

from __future__ import annotations

import threading
from typing import Any

from cryptography import x509

from ...identity import Identity
from ...outbound import OutboundRetryPolicy, Timeout, Verify
from ...redaction import redact_text, redact_url
from .base import (
    DEFAULT_ISSUER_TIMEOUT,
    CertificateIssuer,
    IssuanceError,
    SignedCertificate,
    signed_certificate,
    ttl_text,
)
from .csr import csr_pem, dns_identity

__all__ = ["StepCAIssuer"]


class StepCAIssuer(CertificateIssuer):
    """smallstep step-ca: ``POST /1.0/sign`` with ``{"csr", "ott"}`` (an OIDC or JWK provisioner token).

    ``verify`` is usually the CA's root bundle path (step-ca serves HTTPS from its own PKI).
    ``ttl`` becomes ``notAfter`` (a duration); the provisioner's limits apply.
    """

    kind = "step-ca"

    def __init__(self, url: str, *, ttl: float | str | None = None, verify: Verify = True,
                 timeout: Timeout = DEFAULT_ISSUER_TIMEOUT, retries: OutboundRetryPolicy | None = None) -> None:
        self.ttl = ttl_text(ttl)
        super().__init__(url, verify=verify, timeout=timeout, retries=retries)

    @property
    def description(self) -> str:
        return f"step-ca at {redact_url(self.url)}"

    def sign(self, csr: x509.CertificateSigningRequest, identity: Identity, jwt: str, *,
             cancel: threading.Event | None = None) -> SignedCertificate:
        ident = dns_identity(identity)
        body: dict[str, Any] = {"csr": csr_pem(csr), "ott": jwt}
        if self.ttl is not None:
            body["notAfter"] = self.ttl
        action = f"Signing a certificate for '{ident}' at {self.description}"
        resp = self._post("/1.0/sign", body, action=action, secrets=(jwt,), cancel=cancel)
        with resp:
            doc = self._json(resp)
            status = resp.status_code
        if status not in (200, 201):
            message = doc.get("message") if isinstance(doc, dict) else None
            detail = redact_text(str(message), (jwt,)) if message else "no error message in the answer"
            retryable = status >= 500 or status in (408, 429)
            hint = {
                400: "step-ca could not read the request; check the CA version and the provisioner type.",
                401: ("step-ca refused the token: check the provisioner (OIDC client ID/audience, allowed domains) "
                      "and that the token is fresh."),
                403: "step-ca refused to sign for this identity: check the provisioner's policy and claims.",
            }.get(status, "step-ca is down or overloaded; the current certificate stays in use meanwhile."
                  if retryable else "See step-ca's message above.")
            raise IssuanceError(f"{action} failed: HTTP {status}: {detail}.", hint=hint, status=status,
                                retryable=retryable, token_rejected=status == 401)
        if not isinstance(doc, dict):
            raise IssuanceError(f"{action}: step-ca answered {status} without a JSON object.")
        chain = doc.get("certChain")
        chain_pems: list[object] = list(chain) if isinstance(chain, list) else [doc.get("ca")]
        # certChain is leaf first; signed_certificate drops the leaf if it appears again.
        return signed_certificate([doc.get("crt")], chain_pems, issuer=self.description)
