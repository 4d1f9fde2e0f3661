"""One place that decides what of a URL or a message may be shown.

Query values (API keys, signed URLs), userinfo, known secret values, JWT-shaped text and
bearer values never reach a message, a log line, a ``repr`` or an audit event. Every module
that shows a URL or an upstream message calls these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["redact_query", "redact_url", "redact_text"]

# Three base64url segments starting with a JSON header: what a JWT looks like in free text.
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# Long runs of token-ish characters after "Bearer" anywhere in a message.
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# A query parameter's value inside free text (urllib3: "Max retries exceeded with url: /t?k=v").
_QUERY_VALUE_RE = re.compile(r"([?&][A-Za-z0-9_.~%+-]{1,64}=)[^&\s'\"<>)]+")


def redact_query(query: str) -> str:
    """``a=1&key=s3cret`` → ``a=...&key=...``: query names kept, values (maybe secrets) dropped."""
    return "&".join(f"{kv.split('=', 1)[0]}=..." for kv in query.split("&") if kv)


def redact_url(url: str | None) -> str:
    """The URL with query values replaced by ``...`` and no userinfo (they may carry secrets).

    Never raises: a URL too broken to split shows as ``(unparseable URL)``.
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    query = redact_query(parts.query)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret, anything JWT-shaped, bearer values and URL query values masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _JWT_RE.sub("<jwt>", text)
    text = _QUERY_VALUE_RE.sub(r"\1...", text)
    return _BEARER_RE.sub(r"\1***", text)
