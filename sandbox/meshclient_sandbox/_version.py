"""The sandbox distribution's version: released together with meshclient."""

__version__ = "0.4.0"
