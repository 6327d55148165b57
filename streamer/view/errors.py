"""Errors a handler raises to answer with a status and a clear JSON message (never a 500)."""

from __future__ import annotations


class Problem(Exception):
    """An answer other than 200: `{"error": message}` with `status`."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(Problem):
    status = 400


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
