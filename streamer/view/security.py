"""Optional bearer token on every route but /healthz, the pages' cookie, the Host check of a
view without a token, and protective headers on every answer."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from streamer.view.errors import Forbidden, Unauthorized

OPEN_PATHS = frozenset({"/healthz"})
PAGE_PATHS = frozenset({"/"})  # a browser cannot send a header here: ?access_token= is accepted
PAGE_PREFIXES = ("/accounts/",)  # ... nor to an account page


def _page(path: str) -> bool:
    return path in PAGE_PATHS or path.startswith(PAGE_PREFIXES)


# A page opened with ?access_token= sets this cookie, so that the links between the pages, a
# reload and a bookmark open without the token in the address (a browser sends no header on a
# page load: each of them was a 401). It holds a value derived from the token, never the token;
# HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it) and read
# requests only (GET, HEAD): a write still needs the Authorization header.
COOKIE = "healthstream_view"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
READS = frozenset({"GET", "HEAD"})


def cookie_value(secret: str) -> str:
    """The page cookie's value for `secret`: a new token ends every cookie of the old one."""
    return hmac.new(_raw(secret), b"healthstream view page cookie v1", hashlib.sha256).hexdigest()


def _header_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip(" \t")  # HTTP's whitespace only: U+2028 & co. are part of it
    if scheme.lower() == "bearer" and credentials:
        return credentials
    return None


def _page_token(request: web.Request) -> str | None:
    """A token in a page's address (`?access_token=`): only a page takes one there."""
    return request.query.get("access_token") if _page(request.path) else None


def _cookie_matches(request: web.Request, expected: str) -> bool:
    """Whether a read carries the page cookie of value `expected` (`cookie_value`)."""
    supplied = request.cookies.get(COOKIE)
    return supplied is not None and request.method in READS and token_matches(supplied, expected)


def _raw(text: str) -> bytes:
    """The bytes as sent: aiohttp keeps undecodable header bytes as surrogates; any token compares."""
    return text.encode("utf-8", "surrogateescape")


def token_matches(supplied: str, secret: str) -> bool:
    """Constant-time comparison of the bytes, for any supplied text (non-ASCII, undecodable)."""
    return hmac.compare_digest(_raw(supplied), _raw(secret))


def bearer_auth(secret: str | None) -> Middleware:
    """Refuse requests without `Authorization: Bearer <secret>` (no check when secret is None); a
    page also takes `?access_token=<secret>` and then sets the page cookie, which any read takes."""
    cookie = None if secret is None else cookie_value(secret)  # once, not per request

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if secret is None or cookie is None or request.path in OPEN_PATHS:
            return await handler(request)
        header, in_address = _header_token(request), _page_token(request)
        supplied = header if header is not None else in_address
        if supplied is None:
            if _cookie_matches(request, cookie):
                return await handler(request)
            if _page(request.path):  # a browser cannot send the header: say how to open the page
                raise Unauthorized(
                    f"this view needs its token: open {request.path}?access_token=<token> "
                    "(HEALTHSTREAM_VIEW_TOKEN of the view), or send 'Authorization: Bearer <token>'"
                )
            raise Unauthorized("this view needs a bearer token: send 'Authorization: Bearer <token>'")
        if not token_matches(supplied, secret):
            raise Unauthorized("the bearer token is not valid")
        response = await handler(request)
        if header is None and in_address is not None:
            response.set_cookie(
                COOKIE,
                cookie,
                max_age=COOKIE_MAX_AGE_S,
                path="/",
                httponly=True,
                samesite="Strict",
                secure=request.secure,
            )
        return response

    return check


def trusted_hosts(secret: str | None, allowed: Iterable[str]) -> Middleware:
    """Without a token, answer only requests addressed to an IP address, `localhost` or a name
    in `allowed` (`*`: any). A page on another site could otherwise read the view through DNS
    rebinding: its name, made to resolve to 127.0.0.1, reaches the view as the same origin as the
    page (the browser sends that name as the Host), and a view without a token answered it."""
    names = frozenset(name.strip().lower().rstrip(".") for name in allowed if name.strip())

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if secret is None and "*" not in names and request.path not in OPEN_PATHS:
            name = host_name(request.headers.get("Host", ""))
            if name and not _local_or_address(name) and name not in names:
                raise Forbidden(
                    f"this view has no token and answers only requests addressed to an IP address "
                    f"or localhost, not {name[:100]!r} (a name another site could point here): "
                    "list the name in HEALTHSTREAM_VIEW_ALLOWED_HOSTS, or set HEALTHSTREAM_VIEW_TOKEN"
                )
        return await handler(request)

    return check


def host_name(host: str) -> str:
    """The name or address of a Host header, lower case, without its port or a final dot."""
    host = host.strip()
    if host.startswith("["):  # [IPv6]:port
        return host[1 : host.find("]")].lower() if "]" in host else host.lower()
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit():
        host = name
    return host.lower().rstrip(".")


def _local_or_address(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True  # browsers resolve these to loopback themselves
    try:
        ipaddress.ip_address(name.partition("%")[0])  # an IPv6 zone (fe80::1%eth0) is no part of it
    except ValueError:
        return False
    return True


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
