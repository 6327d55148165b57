"""Errors of the local stack; the message of each is meant for the person at the terminal."""


class StackError(Exception):
    """A step of the local stack failed; str(error) says what and what to do."""


class MissingToolError(StackError):
    """A program the stack needs (java, mvn, ...) is not on PATH."""
