"""Subcommands that other distributions add: ``meshclient sandbox`` and ``meshclient demo`` come
from ``meshclient-sandbox`` (entry point group ``meshclient.commands``), which production clusters
never install. Without it, those commands say exactly what to install instead of failing."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from .common import EXIT_USAGE

__all__ = ["GROUP", "register_plugins", "missing_plugin_command"]

GROUP = "meshclient.commands"
log = logging.getLogger("meshclient.cli")

#: commands a known distribution provides: name -> (help, what to install)
KNOWN: dict[str, tuple[str, str]] = {
    "sandbox": ("run the local Linkerd-like mesh in the foreground", "meshclient-sandbox"),
    "demo": ("the whole story end to end on a local sandbox mesh", "meshclient-sandbox"),
}
_registered: set[str] = set()


def register_plugins(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add every installed plugin's subcommands; list the known missing ones in ``--help``."""
    _registered.clear()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
            register(sub)
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            sub.choices.pop(ep.name, None)
            log.warning("meshclient: the %r command from %s could not be loaded: %s", ep.name, ep.value,
                        type(exc).__name__)
            continue
        _registered.add(ep.name)
    for name, (text, dist) in KNOWN.items():
        if name not in _registered and name not in sub.choices:  # (a broken plugin may have added it)
            sub.add_parser(name, help=f"{text} (not installed: pip install {dist})", add_help=False)


def missing_plugin_command(argv: Sequence[str]) -> int | None:
    """When ``argv`` names a known command whose distribution is missing: say what to install, return 2."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in KNOWN or command in _registered:
        return None
    text, dist = KNOWN[command]
    print(f"meshclient: error: 'meshclient {command}' ({text}) comes with the {dist} distribution, "
          "which is not installed here.", file=sys.stderr)
    print(f"  fix: pip install {dist}   (from a checkout: pip install ./sandbox, or the wheel in wheels/: "
          f"pip install wheels/{dist.replace('-', '_')}-*.whl)", file=sys.stderr)
    return EXIT_USAGE
