"""Errors a handler raises to answer with a status and a clear JSON message (never a 500)."""

from __future__ import annotations

from streamer.projection import redis_reader


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


class Conflict(Problem):
    status = 409


class RequestTimeout(Problem):
    status = 408


class Unavailable(Problem):
    status = 503


# What reading a value stored in Redis raises when it holds something other than what the workers
# write (`streamer.projection.redis_reader.UNREADABLE`). An answer that needs it is a 503 naming the
# error; a list leaves such an entry out instead and counts it (`Entries`, the lists' `unreadable`).
UNREADABLE = redis_reader.UNREADABLE


def unreadable(error: Exception | str) -> str:
    """The 503's message for a value of the projection the view could not read (the error, or
    what was wrong with the value)."""
    what = error if isinstance(error, str) else f"{type(error).__name__}: {str(error)[:200]}"
    return (
        f"the projection holds a value the view cannot read ({what}); "
        "the workers never write such a value: remove it from Redis"
    )
