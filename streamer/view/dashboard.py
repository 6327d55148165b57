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


HEAD_MARKER = "<!--HEAD: head.html (doctype, meta, style)-->"


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def load_page(html_name: str = "index.html", js_name: str | None = "dashboard.js") -> Page:
    """A page (index.html: the dashboard; account.html: the account page; missing.html: an
    unknown account's, without a script: `js_name` None) with head.html (the head the pages
    share), dashboard.css, common.js (what the pages' scripts share) and the page's script in
    place of their markers."""
    static = resources.files("streamer.view") / "static"
    html = (static / html_name).read_text(encoding="utf-8")
    head = (static / "head.html").read_text(encoding="utf-8")
    html = html.replace(HEAD_MARKER, head.rstrip("\n"), 1)
    css = (static / "dashboard.css").read_text(encoding="utf-8")
    html = html.replace("<!--STYLE-->", f"<style>{css}</style>")
    scripts = "'none'"
    if js_name is not None:
        js = (
            (static / "common.js").read_text(encoding="utf-8")
            + "\n"
            + (static / js_name).read_text(encoding="utf-8")
        )
        html = html.replace("<!--SCRIPT-->", f"<script>{js}</script>")
        scripts = _hash(js)
    csp = "; ".join(
        (
            "default-src 'none'",
            f"script-src {scripts}",
            f"style-src {_hash(css)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return Page(html.encode(), csp)
