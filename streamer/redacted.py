"""A URL as logs and errors show it: its password, if it has one, as `***`."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus


def without_password(url: str) -> str:
    """`url` with its password as `***`: before the host (`redis://user:***@host`), or as the
    `password` query option, which redis-py reads too (a unix socket's only way to give one).
    Found by hand, not by `urlsplit`: the URL of an error may be one it refuses."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # `user:password@host` without a scheme is no URL, and still holds the password
        scheme, rest = "", url
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    after = rest[len(netloc) :]
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    path, question, query = after.partition("?")
    if not question:
        return f"{scheme}{sep}{netloc}{path}"
    options = [
        f"{option.partition('=')[0]}=***" if unquote_plus(option.partition("=")[0]) == "password" else option
        for option in query.split("&")
    ]
    return f"{scheme}{sep}{netloc}{path}?{'&'.join(options)}"
