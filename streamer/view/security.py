"""Optional bearer token on every route but /healthz, and protective headers on every answer."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from streamer.view.errors import Unauthorized

OPEN_PATHS = frozenset({"/healthz"})
PAGE_PATHS = frozenset({"/"})  # a browser cannot send a header here: ?access_token= is accepted
PAGE_PREFIXES = ("/accounts/",)  # ... nor to an account page


def _page(path: str) -> bool:
    return path in PAGE_PATHS or path.startswith(PAGE_PREFIXES)


def _supplied(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip(" \t")  # HTTP's whitespace only: U+2028 & co. are part of it
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if _page(request.path):
        return request.query.get("access_token")
    return None


def _raw(text: str) -> bytes:
    """The bytes as sent: aiohttp keeps undecodable header bytes as surrogates; any token compares."""
    return text.encode("utf-8", "surrogateescape")


def token_matches(supplied: str, secret: str) -> bool:
    """Constant-time comparison of the bytes, for any supplied text (non-ASCII, undecodable)."""
    return hmac.compare_digest(_raw(supplied), _raw(secret))


def bearer_auth(secret: str | None) -> Middleware:
    """Refuse requests without `Authorization: Bearer <secret>` (no check when secret is None)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if secret is not None and request.path not in OPEN_PATHS:
            supplied = _supplied(request)
            if supplied is None:
                if _page(request.path):  # a browser cannot send the header: say how to open the page
                    raise Unauthorized(
                        f"this view needs its token: open {request.path}?access_token=<token> "
                        "(HEALTHSTREAM_VIEW_TOKEN of the view), or send 'Authorization: Bearer <token>'"
                    )
                raise Unauthorized("this view needs a bearer token: send 'Authorization: Bearer <token>'")
            if not token_matches(supplied, secret):
                raise Unauthorized("the bearer token is not valid")
        return await handler(request)

    return check


@web.middleware
async def protective_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No sniffing, no framing, no referrer (the page URL may carry a token), no caching."""
    response = await handler(request)
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
    return response
