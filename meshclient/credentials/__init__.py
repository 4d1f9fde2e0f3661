"""Mesh material: the ``Credentials`` snapshot and where it comes from."""

from .loaders import MaterialOrigin
from .snapshot import Credentials, SameSubjectIssuerWarning

__all__ = ["Credentials", "MaterialOrigin", "SameSubjectIssuerWarning"]
