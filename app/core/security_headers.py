"""Content-Security-Policy for every response, exact for HTML pages.

An HTML page may run only the inline scripts and styles it was served with: their SHA-256
hashes are computed from the page itself, so the policy stays exact whatever the template or
the docs generator emits, and an injected `<script>` never runs. Everything else is the
service's own origin (the docs load their packaged assets from /docs-assets), nothing may
frame a page, and forms post nowhere. JSON and other responses get `default-src 'none'`.
"""

from __future__ import annotations

import base64
import hashlib
import re

API_POLICY = b"default-src 'none'; frame-ancestors 'none'"

# Inline elements only: a <script src=...> is covered by 'self'.
_INLINE = re.compile(
    rb"<(script|style)(?![^>]*\bsrc=)[^>]*>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL
)
# Swagger UI and ReDoc build their styles at run time (styled-components inserts <style>
# elements), which no hash can name: on these pages styles may be inline, scripts may not.
_DOCS_PATHS = ("/docs", "/redoc")


def _hash(content: bytes) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(content).digest()).decode() + "'"


def html_policy(path: str, body: bytes) -> bytes:
    scripts: list[str] = []
    styles: list[str] = []
    for match in _INLINE.finditer(body):
        (scripts if match.group(1).lower() == b"script" else styles).append(_hash(match.group(2)))
    docs = path in _DOCS_PATHS
    style_src = "'self' 'unsafe-inline'" if docs else " ".join(["'self'", *styles])
    directives = [
        "default-src 'none'",
        "script-src " + " ".join(["'self'", *scripts]) if docs or scripts else "script-src 'none'",
        "style-src " + style_src,
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "worker-src 'self' blob:" if docs else "worker-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives).encode()
