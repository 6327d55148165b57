"""Errors a handler raises to answer with a status and a clear JSON message (never a 500)."""

from __future__ import annotations


class Problem(Exception):
    """An answer other than 200: `{"error": message}` with `status`; `close`: the connection
    is closed after it (the rest of the request cannot be read)."""

    status = 500
    close = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(Problem):
    status = 400


class UnreadableBody(BadRequest):
    close = True


class Unauthorized(Problem):
    status = 401


class Forbidden(Problem):
    status = 403


class NotFound(Problem):
    status = 404


class RequestTimeout(Problem):
    status = 408


class Unavailable(Problem):
    status = 503
