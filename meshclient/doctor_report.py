"""What :func:`meshclient.doctor` returns: each check as a value, the report as lines or a table.

Kept apart from :mod:`meshclient.checkup` so that the command line's report
(:mod:`meshclient.cli.doctor.report`) can build these values without importing the function
that runs the command's checks.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from .errors import DoctorFailedError

__all__ = ["DoctorCheck", "DoctorReport"]

_MARKS = {"ok": "[ok]", "warn": "[warn]", "fail": "[FAIL]", "skip": "[skip]"}
_NAME_WIDTH = 14
_INDENT = " " * (6 + 1 + _NAME_WIDTH + 1)


@dataclass(frozen=True)
class DoctorCheck:
    """One check: ``status`` (``ok``, ``warn``, ``fail`` or ``skip``), its name, what it found, the fix."""

    status: str
    name: str
    text: str
    hint: str | None = None

    def line(self) -> str:
        """The check as ``meshclient doctor`` prints it (the fix on its own line under a failure)."""
        first = f"{_MARKS[self.status]:<6} {self.name:<{_NAME_WIDTH}} {self.text}"
        if not self.hint:
            return first
        label = "fix:" if self.status == "fail" else "note:"
        return f"{first}\n{_INDENT}{label} {self.hint}"


@dataclass(frozen=True)
class DoctorReport:
    """Every check doctor ran, in order, and its one-line summary."""

    checks: tuple[DoctorCheck, ...]
    summary: str

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skipped checks do not fail)."""
        return not self.failures

    @property
    def failures(self) -> tuple[DoctorCheck, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    def raise_for_failure(self) -> DoctorReport:
        """Raise :class:`~meshclient.DoctorFailedError` naming each failed check and its fix; else return self."""
        if self.ok:
            return self
        failed = self.failures
        first = failed[0]
        names = ", ".join(c.name for c in failed)
        raise DoctorFailedError(f"meshclient doctor: {len(failed)} check(s) failed ({names}); first: {first.text}",
                                hint=first.hint or "Read the [FAIL] lines of the report and the fix under each.",
                                checks=failed)

    def __str__(self) -> str:
        return "\n".join([*(c.line() for c in self.checks), self.summary])

    def _repr_html_(self) -> str:
        """A table in Jupyter and Databricks notebooks (escaped: check texts quote file names and URLs)."""
        colour = {"ok": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "skip": "#6e7781"}
        rows = "".join(
            f"<tr><td style='color:{colour[c.status]};font-weight:bold'>{html.escape(_MARKS[c.status])}</td>"
            f"<td>{html.escape(c.name)}</td><td>{html.escape(c.text)}"
            + (f"<br><i>{'fix' if c.status == 'fail' else 'note'}: {html.escape(c.hint)}</i>" if c.hint else "")
            + "</td></tr>"
            for c in self.checks)
        return (f"<table><thead><tr><th></th><th>check</th><th>result</th></tr></thead><tbody>{rows}</tbody></table>"
                f"<p>{html.escape(self.summary)}</p>")
