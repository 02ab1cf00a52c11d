"""Binding the port a server listens on, and the error for one already taken:
shared by local mode (``local.server``) and the HTTP backend (``channel_server.http_backend``).

Standard library only: the HTTP backend imports it without local mode's dependencies.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Iterator

#: How local mode's message for a taken port ends (README and docs/local-mode.md quote it).
LOCAL_MODE_ADVICE = " (another local mode?); choose another port with --port N, or --port 0 for a free one"
#: How the HTTP backend's message for a taken port ends.
BACKEND_ADVICE = "; choose another --port, or --port 0 for a free one"


class PortInUse(OSError):
    """The address a server was asked to listen on is taken; ``advice`` ends
    the message (how to choose another; local mode's by default)."""

    def __init__(self, host: str, port: int, advice: str = LOCAL_MODE_ADVICE):
        super().__init__(errno.EADDRINUSE, f"{host}:{port} is already in use{advice}")

    def __str__(self) -> str:
        return self.strerror or ""  # always set, by __init__


@contextlib.contextmanager
def port_in_use_reported(host: str, port: int, advice: str = LOCAL_MODE_ADVICE) -> Iterator[None]:
    """Turn an ``EADDRINUSE`` raised in the block into :class:`PortInUse`."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE and not isinstance(exc, PortInUse):
            raise PortInUse(host, port, advice) from None
        raise


def bind(host: str, port: int, *, host_named: str | None = None, advice: str = LOCAL_MODE_ADVICE,
         empty_is_any: bool = False, blocking: bool = False) -> socket.socket:
    """A socket bound to ``host:port`` (0: a free port), not listening yet.

    A host that cannot be resolved is an OSError naming it as ``host_named``
    (default ``--host HOST``); a taken port is :class:`PortInUse` ending in
    ``advice``. ``empty_is_any``: an empty host is every address. The socket
    is non-blocking unless ``blocking``."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            (host or None) if empty_is_any else host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        named = host_named if host_named is not None else f"--host {host}"
        raise OSError(f"cannot listen on {named}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # as asyncio's own servers (and http.server's) do: a restart need not
        # wait for TIME_WAIT; a port another process listens on still cannot be bound
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        with port_in_use_reported(host, port, advice):
            sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.setblocking(blocking)
    return sock
