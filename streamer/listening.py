"""Why a server could not listen at a host and port: one classification, which each command words
with its own options (`streamer view`, `streamer notify`'s metrics server)."""

from __future__ import annotations

import enum
import errno
import socket


class ListenFault(enum.Enum):
    """What was wrong with the address a server was given to listen at."""

    NO_HOST_NAME = "no host name"  # `x..y`, a part over 63 characters, a NUL: the idna codec refuses it
    UNKNOWN_HOST = "unknown host"  # a name no resolver knows
    NOT_THIS_MACHINE = "not this machine"  # an address no interface of this machine has
    PORT_IN_USE = "port in use"
    PORT_NEEDS_PRIVILEGE = "port needs privilege"  # below 1024, without the capability
    OTHER = "other"

    @property
    def about_host(self) -> bool:
        """Whether the host is what to change (otherwise the port)."""
        return self in (ListenFault.NO_HOST_NAME, ListenFault.UNKNOWN_HOST, ListenFault.NOT_THIS_MACHINE)


def listen_fault(error: OSError | ValueError) -> ListenFault:
    """The fault behind a failed listen (`error` as `asyncio`'s `create_server` raised it)."""
    if isinstance(error, ValueError):
        return ListenFault.NO_HOST_NAME
    if isinstance(error, socket.gaierror):
        return ListenFault.UNKNOWN_HOST
    return {
        errno.EADDRNOTAVAIL: ListenFault.NOT_THIS_MACHINE,
        errno.EADDRINUSE: ListenFault.PORT_IN_USE,
        errno.EACCES: ListenFault.PORT_NEEDS_PRIVILEGE,
    }.get(error.errno or 0, ListenFault.OTHER)
