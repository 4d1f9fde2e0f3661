"""Mesh material: the ``Credentials`` snapshot and where it comes from."""

from .snapshot import Credentials, SameSubjectIssuerWarning

__all__ = ["Credentials", "SameSubjectIssuerWarning"]
