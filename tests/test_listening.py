"""`listen_fault`: why a server could not listen, one classification for the view and notify."""

from __future__ import annotations

import errno
import socket

import pytest

from streamer.listening import ListenFault, listen_fault


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (ValueError("label empty or too long"), ListenFault.NO_HOST_NAME),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), ListenFault.UNKNOWN_HOST),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), ListenFault.NOT_THIS_MACHINE),
        (OSError(errno.EADDRINUSE, "Address already in use"), ListenFault.PORT_IN_USE),
        (OSError(errno.EACCES, "Permission denied"), ListenFault.PORT_NEEDS_PRIVILEGE),
        (OSError(errno.EMFILE, "Too many open files"), ListenFault.OTHER),
        (OSError("no errno at all"), ListenFault.OTHER),
    ],
)
def test_each_failed_listen_names_its_fault(error: OSError | ValueError, fault: ListenFault) -> None:
    assert listen_fault(error) is fault


def test_only_the_host_faults_send_the_user_to_the_host_option() -> None:
    hosts = {fault for fault in ListenFault if fault.about_host}
    assert hosts == {ListenFault.NO_HOST_NAME, ListenFault.UNKNOWN_HOST, ListenFault.NOT_THIS_MACHINE}
