"""nginx as a WebDAV artifact store behind mTLS: :class:`NginxPeer` plus ``/dav/`` taking ``PUT``.

The store nginx's ``dav_methods PUT DELETE MKCOL`` gives: a ``PUT`` body is spooled to a
temporary file and renamed into place when it is complete (a cut upload leaves nothing in the
store), ``GET``/``HEAD`` serve files with ``Content-Length`` and no digest, and nothing lists a
directory. That is the store :func:`meshclient.artifacts.push` must verify by ``HEAD`` and
:func:`~meshclient.artifacts.pull` must restore through the manifest alone.

Files land in :attr:`NginxDavPeer.store_root` (``<workdir>/store/dav``); the upload spool is
on the same filesystem, so put the workdir on tmpfs (``/dev/shm``) to measure the wire only.
"""

from __future__ import annotations

from pathlib import Path

from .nginx import NginxPeer, _q

__all__ = ["NginxDavPeer", "DAV_PREFIX"]

DAV_PREFIX = "/dav"


class NginxDavPeer(NginxPeer):
    """:class:`NginxPeer` whose ``/dav/`` location is a WebDAV ``PUT`` store (``client_max_body_size 0``)."""

    @property
    def store_root(self) -> Path:
        """Where ``PUT /dav/<path>`` files land."""
        return self.workdir / "store" / DAV_PREFIX.strip("/")

    @property
    def dav_url(self) -> str:
        return self.url + DAV_PREFIX

    def config(self) -> str:
        base = super().config()
        spool = self.workdir / "store" / ".spool"
        location = f"""        location {DAV_PREFIX}/ {{
            root {_q(self.workdir / "store")};
            dav_methods PUT DELETE MKCOL;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            client_max_body_size 0;
            client_body_buffer_size 1m;
            client_body_temp_path {_q(spool)};
            sendfile on;
        }}
        location = /whoami {{"""
        marker = "        location = /whoami {"
        assert marker in base, "NginxPeer.config() changed: no /whoami location to anchor the DAV location"
        return base.replace(marker, location)

    def _write_material(self) -> None:
        super()._write_material()
        self.store_root.mkdir(parents=True, exist_ok=True)
        (self.workdir / "store" / ".spool").mkdir(parents=True, exist_ok=True)
