"""The dashboard page: one HTML file with its CSS and JS inlined, allowed by a hash-based CSP."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Page:
    html: bytes
    csp: str


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def load_page() -> Page:
    """index.html with dashboard.css and dashboard.js in place of their markers."""
    static = resources.files("streamer.view") / "static"
    html = (static / "index.html").read_text(encoding="utf-8")
    css = (static / "dashboard.css").read_text(encoding="utf-8")
    js = (static / "dashboard.js").read_text(encoding="utf-8")
    html = html.replace("<!--STYLE-->", f"<style>{css}</style>").replace(
        "<!--SCRIPT-->", f"<script>{js}</script>"
    )
    csp = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_hash(js)}",
            f"style-src {_hash(css)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return Page(html.encode(), csp)
