"""The ``push`` and ``pull`` command groups: ``meshclient push artifacts ...``, ``meshclient pull artifacts ...``.

Each kind of payload registers its own subcommand here (``push results`` goes next to
``push artifacts``).
"""

from __future__ import annotations

import argparse

from . import artifacts_command, results_command
from .common import HelpFormatter

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    push = sub.add_parser("push", help="push artifacts or results to a meshed service", formatter_class=HelpFormatter,
                          description="Push something to a meshed service over mutual TLS.")
    push_kinds = push.add_subparsers(dest="kind", metavar="KIND", title="what to push")
    push_kinds.required = True
    artifacts_command.add_push(push_kinds)
    results_command.add_push(push_kinds)

    pull = sub.add_parser("pull", help="pull artifacts from a meshed service", formatter_class=HelpFormatter,
                          description="Fetch something a push stored on a meshed service.")
    pull_kinds = pull.add_subparsers(dest="kind", metavar="KIND", title="what to pull")
    pull_kinds.required = True
    artifacts_command.add_pull(pull_kinds)
