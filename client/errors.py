"""What ``ChannelClient`` raises: every exception is a :class:`ChannelClientError`."""

from __future__ import annotations

from typing import Any, Mapping, Optional


class ChannelClientError(Exception):
    """Everything the client raises on purpose derives from this."""


class RequestFailed(ChannelClientError):
    """The server answered a request with a failure. ``reason`` is its English
    reason (protocol §4.1), ``frame`` the whole reply."""

    def __init__(self, reason: str, frame: Mapping[str, Any]):
        super().__init__(reason)
        self.reason = reason
        self.frame = dict(frame)


class JoinFailed(RequestFailed):
    """``joinFailure``: the join did not happen; the connection stays where it was."""


class PublishFailed(RequestFailed):
    """``publishFailure``. When some members could not be reached, ``delivered``
    and ``failed`` say how many (``partial`` is true; the delivered members did
    receive the message, so publishing again sends them a second copy); otherwise
    they are None and nobody received it."""

    @property
    def delivered(self) -> Optional[int]:
        return self.frame.get("delivered")

    @property
    def failed(self) -> Optional[int]:
        return self.frame.get("failed")

    @property
    def queued(self) -> Optional[int]:
        return self.frame.get("queued")

    @property
    def partial(self) -> bool:
        return self.delivered is not None


class ServerError(RequestFailed):
    """An ``error`` frame in reply (for example a ``pong`` that would exceed 128 KB)."""


class GatewayError(ChannelClientError):
    """API Gateway's own error frame in place of the reply (protocol §9), such as
    ``Internal server error``: the request's effect is unknown (a publish may
    have reached some members)."""

    def __init__(self, message: str, frame: Mapping[str, Any]):
        super().__init__(message)
        self.message = message
        self.frame = dict(frame)


class ConnectionLost(ChannelClientError):
    """The connection closed before the reply: the request's effect is unknown.
    The client reconnects by itself (unless ``reconnect=False``)."""


class ReplyTimeout(ChannelClientError):
    """No reply within ``reply_timeout``; the request's effect is unknown. The
    connection stays (a late reply is dropped) and the client checks it with a
    ping of its own; only before the connection's first reply, or on a server
    that does not echo request ids, is the connection dropped and made again at
    once, as the message then says. Not a
    :class:`ConnectionLost`: the connection is usually not lost."""


class QueueFull(ChannelClientError):
    """The client is disconnected and ``max_queue`` requests already wait to be sent."""


class ClientClosed(ChannelClientError):
    """The client was closed (:meth:`ChannelClient.close`), or it gave up (the
    exception's ``__cause__`` says why)."""


class ConnectFailed(ChannelClientError):
    """No connection could be made: the handshake was refused (``status``, e.g.
    401 or 403 from a ``$connect`` authorizer) or the server could not be reached."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class FrameTooLarge(ChannelClientError, ValueError):
    """The frame is over API Gateway's 128 KB limit; it was not sent."""
