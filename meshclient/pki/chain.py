"""Chains: order and verify leaf -> intermediates -> anchors, naming what is missing."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from ..errors import (
    ChainError,
    EmptyMaterialError,
    MissingIntermediateError,
)
from ._common import _MAX_CHAIN
from .certinfo import check_validity, describe


# -- chains ------------------------------------------------------------------------------------
def _basic_constraints(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    return bc.ca, bc.path_length


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)  # cryptography >= 40
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    """True for a root: its own name as issuer and a signature its own key verifies."""
    return _signed_by(cert, cert)


def _key_ids_match(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        aki = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        ski = parent.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False
    return aki is not None and aki == ski


def _names(certs: Sequence[x509.Certificate]) -> str:
    return ", ".join(f"'{describe(c)}'" for c in certs) or "none"


def check_end_entity(certs: Sequence[x509.Certificate], *, where: str) -> None:
    """The first certificate must be the workload's leaf, not a CA (a common wrong order)."""
    if not certs or not _basic_constraints(certs[0])[0]:
        return
    leaf_at = next((i for i, c in enumerate(certs) if not _basic_constraints(c)[0]), None)
    if leaf_at is not None:
        raise ChainError(
            f"The certificate chain in {where} is in the wrong order: it starts with the CA certificate "
            f"'{describe(certs[0])}', and the workload's leaf '{describe(certs[leaf_at])}' is certificate number "
            f"{leaf_at + 1}.",
            hint="Put the leaf first, then its issuer (what tls.crt holds and what the TLS handshake sends).",
        )
    raise ChainError(
        f"The certificate chain in {where} holds only CA certificates ({_names(certs)}): the workload's own leaf "
        "certificate is missing.",
        hint="Give the workload's leaf (the certificate naming its identity) followed by its issuer; CA "
        "certificates go in the trust anchors.",
    )


@dataclass(frozen=True)
class ChainResult:
    """A verified path: leaf first, anchor last.

    ``same_dn_issuers`` are issuers whose subject equals their own issuer's subject (OpenSSL
    mistakes them for self-signed); ``partial_anchor`` is set when the anchor used is not a
    self-signed root (OpenSSL then needs ``VERIFY_X509_PARTIAL_CHAIN``).
    """

    path: tuple[x509.Certificate, ...]
    anchor: x509.Certificate
    same_dn_issuers: tuple[x509.Certificate, ...]
    partial_anchor: bool = False


def build_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    where: str,
    now: _dt.datetime,
    anchors_where: str | None = None,
) -> ChainResult:
    """Find and check the path leaf → intermediates → one trust anchor, as a Linkerd proxy would.

    Checks signatures, CA flags, path lengths and dates of everything above the leaf. Any
    anchor of a multi-anchor bundle (rotation overlap) may be the one the path ends at.
    """
    anchors_where = anchors_where or where
    if not anchors:
        raise EmptyMaterialError(
            f"The trust anchor bundle in {anchors_where} holds no certificate.",
            hint="Give the mesh trust anchors (Linkerd's ca-bundle.crt from ConfigMap linkerd-identity-trust-roots, "
            "or ca.crt).",
        )
    path = [leaf]
    pool = [c for c in intermediates if c != leaf]
    current = leaf
    for _ in range(_MAX_CHAIN):
        anchor = next((a for a in anchors if _signed_by(current, a)), None)
        if anchor is not None:
            break
        parent = next((c for c in pool if _signed_by(current, c)), None)
        if parent is None:
            raise _no_issuer(leaf, current, intermediates, anchors, where=where, anchors_where=anchors_where)
        path.append(parent)
        pool.remove(parent)
        current = parent
    else:
        raise ChainError(f"The certificate chain in {where} is longer than {_MAX_CHAIN} certificates.",
                         hint="Give the leaf and its issuer only; Linkerd chains are leaf → issuer → anchor.")

    for depth, cert in enumerate([*path[1:], anchor]):
        is_ca, pathlen = _basic_constraints(cert)
        role = "trust anchor" if cert is anchor else "issuer"
        src = anchors_where if cert is anchor else where
        if not is_ca:
            raise ChainError(
                f"The {role} '{describe(cert)}' in {src} signed '{describe(path[depth])}' but is not a CA "
                "certificate (basicConstraints CA:TRUE is missing), so TLS peers reject the chain.",
                hint="Issue workload certificates from a CA certificate (Linkerd: the identity issuer, CA:TRUE "
                "pathlen:0).",
            )
        if pathlen is not None and depth > pathlen:
            raise ChainError(
                f"The {role} '{describe(cert)}' in {src} allows {pathlen} intermediate CA(s) below it "
                f"(pathlen:{pathlen}), but this chain has {depth}.",
                hint="Issue the leaf directly from the Linkerd issuer (root pathlen:1 → issuer pathlen:0 → leaf).",
            )
    for cert in path[1:]:
        check_validity(cert, role="issuer", where=where, now=now)
    check_validity(anchor, role="trust anchor", where=anchors_where, now=now)
    same_dn = tuple(c for c in path[1:] if c.subject == c.issuer)
    return ChainResult(path=tuple(path), anchor=anchor, same_dn_issuers=same_dn,
                       partial_anchor=not is_self_signed(anchor))


def _no_issuer(
    leaf: x509.Certificate,
    current: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    where: str,
    anchors_where: str,
) -> ChainError:
    """Explain why ``current`` has no issuer among the chain and the anchors."""
    issuer_dn = current.issuer.rfc4514_string() or "(empty name)"
    name = describe(current)
    anchor_list = f"The anchors in {anchors_where} are: {_names(anchors)}."
    same_name_anchors = [a for a in anchors if a.subject == current.issuer]
    wrong_anchors_hint = (
        "Use the trust anchors of the cluster that issued this certificate (ConfigMap "
        "linkerd-identity-trust-roots, key ca-bundle.crt); during an anchor rotation the bundle must hold "
        "both the old and the new anchor."
    )
    if current is not leaf:
        if is_self_signed(current):
            return ChainError(
                f"The certificate chain in {where} does not verify to the trust anchors: it ends at the root "
                f"'{name}', which is not one of them. {anchor_list}",
                hint=wrong_anchors_hint,
            )
        if same_name_anchors:
            return ChainError(
                f"The certificate chain in {where} does not verify to the trust anchors: the issuer '{name}' "
                f"was signed by a CA named '{issuer_dn}', and the trust anchor with that name has a different key "
                "(another cluster, or a rotated anchor).",
                hint=wrong_anchors_hint,
            )
        return ChainError(
            f"The certificate chain in {where} does not verify to the trust anchors: the issuer '{name}' was "
            f"signed by '{issuer_dn}', which is neither in the chain nor among the anchors. {anchor_list}",
            hint=wrong_anchors_hint + " If '" + issuer_dn + "' is a second intermediate, append it to the chain.",
        )
    if is_self_signed(leaf):
        return ChainError(
            f"The leaf '{name}' in {where} is self-signed: no mesh CA issued it, so no Linkerd proxy trusts it.",
            hint="Use a certificate issued by the cluster's identity issuer (Linkerd issues one per workload; for "
            "local work use meshclient's sandbox PKI).",
        )
    same_name_chain = [c for c in intermediates if c.subject == current.issuer and c != current]
    if same_name_chain:
        return ChainError(
            f"The issuer certificate '{describe(same_name_chain[0])}' in {where} did not sign the leaf "
            f"'{name}': the leaf and the issuer come from different issuances (often an issuer rotation).",
            hint="Take the leaf and the issuer certificate from the same, current secret (tls.crt as a whole).",
        )
    if same_name_anchors and any(_key_ids_match(leaf, a) for a in same_name_anchors):
        return ChainError(
            f"The leaf '{name}' in {where} names the trust anchor '{issuer_dn}' as its issuer, but the anchor's "
            "key does not verify its signature: the certificate is damaged or was altered.",
            hint="Fetch the certificate again from its source.",
        )
    if same_name_anchors:
        return MissingIntermediateError(
            f"The leaf '{name}' in {where} was issued by '{issuer_dn}', and a trust anchor in {anchors_where} has "
            "that name but did not sign it. Either the issuer certificate is missing from the chain (Linkerd's "
            "issuer may share the root's name), or these trust anchors belong to another cluster.",
            hint="Append the issuer certificate after the leaf (tls.crt holds leaf then issuer); if it is already "
            "there, " + wrong_anchors_hint[0].lower() + wrong_anchors_hint[1:],
        )
    chain_note = f" (the chain holds {_names(intermediates)})" if intermediates else " (the chain holds only the leaf)"
    return MissingIntermediateError(
        f"The leaf '{name}' in {where} was issued by '{issuer_dn}', which is neither in the certificate chain"
        f"{chain_note} nor among the trust anchors. {anchor_list}",
        hint="Append the issuer (intermediate) certificate after the leaf (tls.crt holds leaf then issuer); if "
        "the chain is complete, use the trust anchors of the cluster that issued it.",
    )

