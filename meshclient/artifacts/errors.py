"""Errors of :mod:`meshclient.artifacts`: every one names the files and the store it is about."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import MeshError

__all__ = ["ArtifactError", "ArtifactPushError", "ArtifactPullError", "ArtifactIntegrityError",
           "ArtifactChangedError", "FailedFile"]

_SHOWN = 10


@dataclass(frozen=True)
class FailedFile:
    """One file that did not make it: its relative path and why (an error type and message)."""

    path: str
    error: str
    message: str


class ArtifactError(MeshError):
    """An artifact push or pull failed."""


class ArtifactIntegrityError(ArtifactError):
    """A file's bytes on the other side are not the bytes meant (sha-256 or size differ)."""


class ArtifactChangedError(ArtifactError):
    """A local file changed while it was being pushed (its size or modification time moved)."""


def _listing(failed: Sequence[FailedFile]) -> str:
    lines = [f"{f.path} ({f.error}: {f.message})" for f in failed[:_SHOWN]]
    more = len(failed) - _SHOWN
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)


class ArtifactPushError(ArtifactError):
    """Some files were not stored (and verified); no manifest was written, so readers see nothing new.

    ``failed`` lists every file that did not make it, ``pushed`` the relative paths that did.
    """

    def __init__(self, message: str, *, failed: Sequence[FailedFile] = (), pushed: Sequence[str] = (),
                 hint: str | None = None) -> None:
        self.failed = tuple(failed)
        self.pushed = tuple(pushed)
        super().__init__(message, hint=hint)

    @classmethod
    def of(cls, store: str, failed: Sequence[FailedFile], pushed: Sequence[str], total: int) -> ArtifactPushError:
        return cls(
            f"{len(failed)} of {total} file(s) could not be pushed to {store}: {_listing(failed)}. "
            "No manifest was written, so the set is not published.",
            failed=failed, pushed=pushed,
            hint="Fix the cause named for each file and push again: files already stored are replaced "
            "(PUT is idempotent) and the manifest is written once every file is verified.",
        )


class ArtifactPullError(ArtifactError):
    """Some files could not be fetched or verified; none of them was left in the destination."""

    def __init__(self, message: str, *, failed: Sequence[FailedFile] = (), hint: str | None = None) -> None:
        self.failed = tuple(failed)
        super().__init__(message, hint=hint)

    @classmethod
    def of(cls, store: str, failed: Sequence[FailedFile], total: int) -> ArtifactPullError:
        return cls(
            f"{len(failed)} of {total} file(s) could not be pulled from {store}: {_listing(failed)}.",
            failed=failed,
            hint="Files that failed verification were not written to the destination; pull again once the "
            "store is complete (a push in progress publishes its manifest last).",
        )
