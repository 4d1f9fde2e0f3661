"""The package version and the one User-Agent every meshclient request sends.

Its own module so nothing imports the package root (``meshclient/__init__``) for it: that
import made cycles.
"""

from __future__ import annotations

__all__ = ["__version__", "user_agent"]

__version__ = "0.1.0"


def user_agent() -> str:
    """``meshclient/<version> python-requests/<version>``: mesh and outbound calls alike."""
    import requests

    return f"meshclient/{__version__} python-requests/{requests.__version__}"
