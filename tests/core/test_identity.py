"""Identity parsing/formatting and IdentityPattern matching, with Linkerd's rules.

Matching vectors marked "linkerd2-proxy" come from the unit tests of ``is_tls_authorized`` in
linkerd2-proxy ``linkerd/app/inbound/src/policy.rs`` (URI ids match exactly, DNS ids exactly
or by suffix; ``Suffix::contains`` is ``name.ends_with("." + parts.join("."))``).
"""

from __future__ import annotations

import pickle

import pytest

from meshclient import Identity, IdentityError, IdentityPattern, MeshError

SCORER = "scorer.ml-team.serviceaccount.identity.linkerd.cluster.local"
SPIFFE = "spiffe://cluster.local/ns/ml-team/sa/scorer"


# -- Linkerd DNS identities ------------------------------------------------------------------
def test_parse_linkerd_identity_fields() -> None:
    ident = Identity.parse(SCORER)
    assert (ident.kind, ident.service_account, ident.namespace) == ("dns", "scorer", "ml-team")
    assert (ident.control_plane_ns, ident.trust_domain) == ("linkerd", "cluster.local")
    assert ident.is_dns and ident.is_linkerd and not ident.is_spiffe
    assert str(ident) == SCORER


def test_linkerd_constructor_uses_linkerd_defaults() -> None:
    assert Identity.linkerd("scorer", "ml-team") == Identity.parse(SCORER)
    assert str(Identity.linkerd("a", "b")) == "a.b.serviceaccount.identity.linkerd.cluster.local"


def test_custom_control_plane_and_trust_domain() -> None:
    ident = Identity.linkerd("scorer", "ml-team", control_plane_ns="linkerd-prod", trust_domain="prod.example.com")
    assert str(ident) == "scorer.ml-team.serviceaccount.identity.linkerd-prod.prod.example.com"
    parsed = Identity.parse(str(ident))
    assert (parsed.control_plane_ns, parsed.trust_domain) == ("linkerd-prod", "prod.example.com")
    assert parsed == ident


def test_control_plane_identity_has_the_same_shape() -> None:
    ident = Identity.parse("linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local")
    assert (ident.service_account, ident.namespace) == ("linkerd-identity", "linkerd")


def test_other_dns_names_are_dns_identities_but_not_linkerd() -> None:
    ident = Identity.parse("identity.linkerd.cluster.local")
    assert ident.is_dns and not ident.is_linkerd
    assert ident.service_account is None and ident.namespace is None


def test_label_and_name_limits_are_exact() -> None:
    sa63 = "a" * 63
    assert Identity.linkerd(sa63, "ns").service_account == sa63
    with pytest.raises(IdentityError, match="64 characters; a DNS label allows 63"):
        Identity.linkerd("a" * 64, "ns")
    name253 = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name253) == 253
    assert Identity.parse(name253).value == name253
    with pytest.raises(IdentityError, match="254 characters; a DNS name allows 253"):
        Identity.parse(name253 + "b")


# -- SPIFFE IDs ----------------------------------------------------------------------------------
def test_parse_spiffe_kubernetes_shape() -> None:
    ident = Identity.parse(SPIFFE)
    assert ident.is_spiffe and not ident.is_dns and not ident.is_linkerd
    assert (ident.trust_domain, ident.namespace, ident.service_account) == ("cluster.local", "ml-team", "scorer")
    assert ident.path == "/ns/ml-team/sa/scorer"
    assert Identity.spiffe("cluster.local", "ml-team", "scorer") == ident


def test_parse_spiffe_other_paths() -> None:
    ident = Identity.parse("spiffe://example.org/vm/db-01.prod_eu")
    assert ident.is_spiffe and ident.path == "/vm/db-01.prod_eu"
    assert ident.namespace is None and ident.service_account is None


def test_spiffe_length_limit() -> None:
    base = "spiffe://td/"
    Identity.parse(base + "a" * (2048 - len(base)))
    with pytest.raises(IdentityError, match="2049 characters; the limit is 2048"):
        Identity.parse(base + "a" * (2049 - len(base)))


# -- value semantics -------------------------------------------------------------------------------
def test_identity_is_hashable_frozen_and_picklable() -> None:
    ident = Identity.parse(SCORER)
    assert {ident: 1}[Identity.parse(SCORER)] == 1
    with pytest.raises(AttributeError):
        ident.value = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(ident)) == ident
    assert Identity.parse(ident) is ident


def test_direct_construction_is_validated() -> None:
    with pytest.raises(IdentityError):
        Identity(value="Not An Identity", kind="dns", trust_domain="x")
    with pytest.raises(IdentityError, match="do not match its value"):
        Identity(value=SCORER, kind="dns", trust_domain="cluster.local", service_account="someone-else",
                 namespace="ml-team", control_plane_ns="linkerd")
    ok = Identity(value=SCORER, kind="dns", trust_domain="cluster.local", service_account="scorer",
                  namespace="ml-team", control_plane_ns="linkerd")
    assert ok == Identity.parse(SCORER)


def test_identity_errors_are_value_errors_and_mesh_errors() -> None:
    with pytest.raises(ValueError) as info:
        Identity.parse("Scorer")
    assert isinstance(info.value, MeshError) and info.value.hint


def test_non_string_is_rejected_plainly() -> None:
    with pytest.raises(IdentityError, match="must be a string, got int"):
        Identity.parse(42)  # type: ignore[arg-type]


# -- bad identities: each has its own message naming the problem, and a hint ----------------------
BAD = [
    ("", "is empty"),
    (" " + SCORER, "surrounding whitespace"),
    (SCORER + "\n", "surrounding whitespace"),
    ("Scorer.ml-team.serviceaccount.identity.linkerd.cluster.local", "not a valid DNS-1123 label"),
    ("fraud_model.ml-team.serviceaccount.identity.linkerd.cluster.local", "not a valid DNS-1123 label"),
    ("-scorer.ml-team.serviceaccount.identity.linkerd.cluster.local", "not a valid DNS-1123 label"),
    ("scorer..serviceaccount.identity.linkerd.cluster.local", "empty label"),
    ("scorer", "single name"),
    ("https://10.0.3.7:8080/x", "looks like a URL"),
    ("10.0.3.7:8080", "host:port"),
    ("10.0.3.7", "IP address"),
    ("scorer.ml-team/x", "URL path"),
    ("fraud-model.ml-serving.svc.cluster.local", "Kubernetes Service DNS name"),
    ("fraud-model.ml-serving.svc", "Kubernetes Service DNS name"),
    ("a.b.c.serviceaccount.identity.linkerd.cluster.local", "has 3 labels before"),
    ("ml-team.serviceaccount.identity.linkerd.cluster.local", "has 1 label before"),
    ("scorer.ml-team.serviceaccount.identity.linkerd", "lacks the trust domain"),
    (SCORER + ".", "ends with a dot"),
    ("SPIFFE://cluster.local/ns/a/sa/b", "lower-case 'spiffe://'"),
    ("spiffe://", "no trust domain"),
    ("spiffe:///ns/a", "no trust domain"),
    ("spiffe://cluster.local", "needs a path"),
    ("spiffe://cluster.local/", "needs a path"),
    ("spiffe://Cluster.local/ns/a/sa/b", "trust domain 'Cluster.local' is invalid"),
    ("spiffe://cluster.local:8443/ns/a/sa/b", "is invalid"),
    ("spiffe://user@cluster.local/ns/a/sa/b", "is invalid"),
    ("spiffe://cluster.local/ns//sa/b", "empty path segment"),
    ("spiffe://cluster.local/ns/a/sa/b/", "empty path segment"),
    ("spiffe://cluster.local/ns/./sa/b", "'.' path segment"),
    ("spiffe://cluster.local/ns/../sa/b", "'..' path segment"),
    ("spiffe://cluster.local/ns/a%2Fb/sa/c", "outside [A-Za-z0-9._-]"),
    ("spiffe://cluster.local/ns/a/sa/b?x=1", "outside [A-Za-z0-9._-]"),
    ("spiffe://cluster.local/ns/a/sa/b#frag", "outside [A-Za-z0-9._-]"),
    ("spiffe://" + "a" * 256 + "/x", "the limit is 255"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD)
def test_bad_identity_has_a_specific_message_and_a_hint(text: str, fragment: str) -> None:
    with pytest.raises(IdentityError) as info:
        Identity.parse(text)
    assert fragment in info.value.message
    assert info.value.hint, "every identity error says what to do"
    assert str(info.value) == f"{info.value.message} {info.value.hint}"


def test_hints_suggest_the_fix() -> None:
    with pytest.raises(IdentityError) as info:
        Identity.parse("Scorer.ML-team.serviceaccount.identity.linkerd.cluster.local")
    assert "'scorer.ml-team.serviceaccount.identity.linkerd.cluster.local'" in (info.value.hint or "")
    with pytest.raises(IdentityError) as info:
        Identity.parse("fraud_model.ml-team.serviceaccount.identity.linkerd.cluster.local")
    assert "'fraud-model'" in (info.value.hint or "")
    with pytest.raises(IdentityError) as info:
        Identity.parse("fraud-model.ml-serving.svc.cluster.local")
    assert "fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("fraud.model", "ml-serving"), "the service account 'fraud.model' contains '.'"),
        (("scorer", "ml.team"), "the namespace 'ml.team' contains '.'"),
        (("Scorer", "ml-team"), "the service account 'Scorer' is not a valid DNS-1123 label"),
        (("", "ml-team"), "empty service account"),
        (("scorer", "x" * 64), "64 characters"),
    ],
)
def test_linkerd_constructor_names_the_bad_part(args: tuple[str, str], fragment: str) -> None:
    with pytest.raises(IdentityError) as info:
        Identity.linkerd(*args)
    assert fragment in info.value.message


def test_linkerd_constructor_checks_control_plane_and_trust_domain() -> None:
    with pytest.raises(IdentityError, match="control-plane namespace"):
        Identity.linkerd("a", "b", control_plane_ns="Linkerd")
    with pytest.raises(IdentityError, match="trust domain"):
        Identity.linkerd("a", "b", trust_domain="")
    with pytest.raises(IdentityError, match="trust-domain label"):
        Identity.linkerd("a", "b", trust_domain="cluster..local")


def test_spiffe_constructor_checks_names() -> None:
    with pytest.raises(IdentityError, match="namespace"):
        Identity.spiffe("cluster.local", "ml/team", "scorer")


# -- patterns --------------------------------------------------------------------------------------
MATCHES = [
    # exact
    (SCORER, SCORER, True),
    (SCORER, "other.ml-team.serviceaccount.identity.linkerd.cluster.local", False),
    (SPIFFE, SPIFFE, True),
    (SPIFFE, "spiffe://cluster.local/ns/ml-team/sa/other", False),
    (SCORER, SPIFFE, False),
    # '*' is any DNS identity, never a URI identity
    ("*", SCORER, True),
    ("*", "identity.linkerd.cluster.local", True),
    ("*", SPIFFE, False),
    # '*.suffix': one label or more in front, DNS identities only
    ("*.ml-team.serviceaccount.identity.linkerd.cluster.local", SCORER, True),
    ("*.serviceaccount.identity.linkerd.cluster.local", SCORER, True),  # one label or more in front
    ("*.identity.linkerd.cluster.local", SCORER, True),
    ("*.cluster.local", SCORER, True),
    ("*.local", SCORER, True),
    ("*.team.serviceaccount.identity.linkerd.cluster.local", SCORER, False),  # no partial-label match
    ("*.cluster.local", "cluster.local", False),  # the suffix itself has nothing in front
    ("*.cluster.local", SPIFFE, False),  # a wildcard never matches a URI identity
    ("*.local", "spiffe://cluster.local/ns/a/sa/b", False),
    # linkerd2-proxy policy.rs vectors
    ("spiffe://some-root/some-workload", "spiffe://some-root/some-workload", True),
    ("spiffe://some-root/some-workload-2", "spiffe://some-root/some-workload-1", False),
    ("some.id.local", "some.id.local", True),
    ("some.id.local.two", "some.id.local.one", False),
    ("*.id.local", "some.id.local", True),
    ("*.another-id.local", "some.id.local", False),
    ("*.some-workload-1", "spiffe://some-root/some-workload-1", False),
]


@pytest.mark.parametrize(("pattern", "identity", "expected"), MATCHES)
def test_pattern_matching_follows_linkerd(pattern: str, identity: str, expected: bool) -> None:
    assert IdentityPattern.parse(pattern).matches(identity) is expected
    assert IdentityPattern.parse(pattern).matches(Identity.parse(identity)) is expected


def test_suffix_semantics_equal_linkerds_ends_with() -> None:
    # Suffix::contains(name) == name.ends_with("." + parts.join(".")); '*' is the empty suffix.
    names = [SCORER, "a.b", "x.identity.linkerd.cluster.local", "identity.linkerd.cluster.local"]
    for pattern in ("*", "*.cluster.local", "*.linkerd.cluster.local", "*.b"):
        ends_with = "" if pattern == "*" else pattern[1:]
        for name in names:
            assert IdentityPattern(pattern).matches(name) is name.endswith(ends_with)


def test_pattern_from_identity_is_exact() -> None:
    pattern = IdentityPattern.parse(Identity.parse(SCORER))
    assert str(pattern) == SCORER and not pattern.is_wildcard
    assert IdentityPattern("*").is_wildcard and IdentityPattern("*.cluster.local").is_wildcard
    assert IdentityPattern.parse(pattern) is pattern


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("scorer.*.serviceaccount.identity.linkerd.cluster.local", "may only be a leading '*.'"),
        ("*scorer.ml-team.serviceaccount.identity.linkerd.cluster.local", "may only be a leading '*.'"),
        ("*.*.ml-team.serviceaccount.identity.linkerd.cluster.local", "only one leading '*.'"),
        ("spiffe://cluster.local/ns/ml-team/sa/*", "may only be a leading '*.'"),
        ("*.spiffe://cluster.local/ns/a", "never match SPIFFE IDs"),
        ("*.", "empty suffix"),
        ("*.Cluster.local", "not a valid DNS-1123 label"),
        ("*.Local", "not a valid DNS-1123 label"),
        ("", "Identity pattern: The identity is empty."),
        ("Scorer.ml-team.serviceaccount.identity.linkerd.cluster.local", "Identity pattern: "),
    ],
)
def test_bad_patterns_are_rejected(pattern: str, fragment: str) -> None:
    with pytest.raises(IdentityError) as info:
        IdentityPattern(pattern)
    assert fragment in info.value.message
    assert info.value.hint


def test_spiffe_wildcard_hint_says_wildcards_never_match_uris() -> None:
    with pytest.raises(IdentityError) as info:
        IdentityPattern("spiffe://cluster.local/ns/ml-team/sa/*")
    assert "never match SPIFFE IDs" in (info.value.hint or "")


def test_matching_a_bad_identity_raises() -> None:
    with pytest.raises(IdentityError):
        IdentityPattern("*").matches("Not-An-Identity")
