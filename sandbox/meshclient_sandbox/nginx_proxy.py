"""nginx as a Linkerd-like inbound proxy in front of a plain-HTTP app on loopback: the same mTLS
terminator as :class:`~meshclient_sandbox.nginx.NginxPeer` (TLS 1.3, SNI = the identity, client
certificate verified), whose catch-all location forwards to the app over keep-alive connections
with the verified client in ``l5d-client-id``. Bodies stream both ways (no spooling to disk), as
a Linkerd proxy streams them. For benchmarks, where the sandbox's Python proxy would be the
bottleneck rather than the client under test.
"""

from __future__ import annotations

import re
from typing import Any

from .nginx import NginxPeer

__all__ = ["ProxyingNginx"]


class ProxyingNginx(NginxPeer):
    """``NginxPeer`` whose catch-all location proxies to ``upstream_port`` on loopback."""

    def __init__(self, upstream_port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.upstream_port = upstream_port

    def config(self) -> str:
        text = super().config()
        upstream = (f"    upstream app {{ server 127.0.0.1:{self.upstream_port}; keepalive 64; }}\n"
                    "    client_max_body_size 0;\n"
                    # small bodies stay in memory (no temp file: ~40 ms each otherwise); large ones stream
                    "    client_body_buffer_size 16m;\n")
        text = text.replace("    # Default server:", upstream + "    # Default server:", 1)
        proxied = ("location / {\n            proxy_pass http://app;\n            proxy_http_version 1.1;\n"
                   "            proxy_set_header Connection \"\";\n"
                   # the app sees the authority the client asked for, as behind a Linkerd proxy
                   "            proxy_set_header Host $http_host;\n"
                   "            proxy_request_buffering off;\n            proxy_buffering off;\n"
                   "            proxy_read_timeout 600s;\n            proxy_send_timeout 600s;\n"
                   "            proxy_set_header l5d-client-id $ssl_client_s_dn;\n        }")
        return re.sub(r"location / \{\n.*?return 200 [^\n]*;\n        \}", proxied, text, flags=re.S)
