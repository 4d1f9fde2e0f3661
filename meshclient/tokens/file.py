"""``FileToken``: a token file re-read when it changes (Kubernetes projected service-account tokens)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .base import BaseTokenProvider, RefreshSettings, Token
from .errors import TokenError

__all__ = ["FileToken"]

_MAX_BYTES = 64 * 1024


def _stat_key(path: str) -> tuple[int, int, int, int]:
    # os.stat follows symlinks, so the ..data symlink swap kubelet does changes the inode.
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class FileToken(BaseTokenProvider):
    """The token in a file, re-read whenever the file changes (inode, mtime or size).

    Kubelet replaces projected service-account tokens by swapping a symlink; the inode check
    sees that even when mtime and size are equal. A JWT's ``exp`` claim is honoured; the file
    is also re-read when its token turns stale or expires. Pickling ships the path only.
    """

    def __init__(self, path: str | os.PathLike[str], *, refresh: RefreshSettings | None = None) -> None:
        super().__init__(refresh=refresh)
        self.path = os.fspath(path)
        self._seen: tuple[tuple[int, int, int, int], str] | None = None

    def _fetch(self) -> Token:
        for _ in range(3):
            try:
                before = _stat_key(self.path)
                with open(self.path, "rb") as f:
                    raw = f.read(_MAX_BYTES + 1)
                after = _stat_key(self.path)
            except FileNotFoundError:
                raise TokenError(
                    f"Token file {self.path} does not exist.",
                    hint="Check the path (a projected service-account token volume, a mounted secret).",
                ) from None
            except OSError as exc:
                raise TokenError(f"Token file {self.path} cannot be read: {exc.strerror or exc}.") from None
            if before == after:
                break  # not swapped while we read it
        if len(raw) > _MAX_BYTES:
            raise TokenError(f"Token file {self.path} is larger than {_MAX_BYTES} bytes: not a token.")
        try:
            value = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise TokenError(f"Token file {self.path} is not ASCII text: not a bearer token.") from None
        if not value:
            raise TokenError(f"Token file {self.path} is empty.", hint="Wait for the token to be written.")
        token = Token.from_value(value)
        self._seen = (after, value)
        return token

    def _outdated(self, token: Token) -> bool:
        seen = self._seen
        if seen is None or seen[1] != token.value:
            return True
        try:
            return _stat_key(self.path) != seen[0]
        except OSError:
            return False  # gone for now: keep the cached token; its refresh will report the file

    def _secrets(self) -> Iterable[str | None]:
        seen = self._seen
        return (seen[1] if seen else None,)

    def _describe(self) -> str:
        return f"FileToken(path={self.path!r})"

    def _expired_hint(self) -> str | None:
        return f"The token in {self.path} has not been renewed; check what writes it (kubelet, a sidecar)."

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        state["_seen"] = None
        return state
