"""A Python client for a channel server (docs/protocol.md), on API Gateway's terms.

    from channel_server.client import ChannelClient

    async with ChannelClient("wss://abc123.execute-api.eu-west-1.amazonaws.com/prod") as client:
        joined = await client.join("lobby")       # returns on joinSuccess
        await client.publish({"text": "hello"})   # returns on publishSuccess
        async for message in client:              # Message(channel_id, sender_id, data, message_id)
            print(message.sender_id, message.data)

What every client of a channel server on API Gateway has to do, done once:

- **Requests in flight, paired by id.** Every join, publish and ping carries
  a fresh ``requestId`` (protocol §3), and the server echoes it in the reply,
  so up to ``max_in_flight`` requests (16 by default) are in flight at once and
  each reply settles the request with its id, in whatever order replies come.
  Concurrent calls are sent in the order they were made; beyond the cap they
  wait for a slot. Each call returns on its reply or raises the exception that
  documents it (see :class:`ChannelClientError`). The first request on each
  connection goes alone: its reply says whether the server echoes ids. A
  server that does not (one older than request ids) gets one request at a time
  for the rest of that connection, its replies paired by order, as before.
  A join goes alone (the requests before it answered, the ones after it
  waiting for its reply), so that they happen in the channel it joins.
  Publishes in flight together may reach the other members in any order
  (protocol §5): to keep a sender's order, await each publish before the next.
- **A reply that does not come.** The request raises :class:`ReplyTimeout`
  after ``reply_timeout`` seconds, and the connection stays: a late reply with
  that id is dropped. The client then checks the connection with a ``ping``
  of its own; that ping unanswered within ``reply_timeout`` means the
  connection is dead, and it is dropped and made again. (Before the
  connection's first reply, and on a server that does not echo ids, a late
  reply could not be told from the next request's, so there a
  ``ReplyTimeout`` drops the connection at once, as before.)
- **API Gateway's error frames** (protocol §9) carry no ``type`` and AWS's own
  request id, so they do not say which request they answer. With one request
  in flight it is that one (:class:`GatewayError`). With several, the client
  waits: the others get their own replies (API Gateway answers every frame,
  with the function's reply or its error frame), and the one left without a
  reply gets the :class:`GatewayError`. If one of them times out meanwhile,
  the frame's owner cannot be told: the others that get no reply raise
  :class:`ReplyTimeout`.
- **Keeping an idle connection open.** API Gateway closes a connection after
  10 idle minutes. The client sends a ``ping`` whenever ``ping_interval``
  seconds (4 minutes by default) pass without a frame in either direction, so
  the server's own ``heartbeat`` frames, when it sends them, make the pings
  unnecessary and none are sent. Such a ping not answered within
  ``reply_timeout`` means the connection is dead: the client drops it and
  reconnects.
  ``heartbeat`` frames are never yielded as messages.
- **Reconnecting.** API Gateway closes every connection after 2 hours, and on
  deploys. When a connection closes for any reason other than :meth:`close`,
  the client reconnects with exponential backoff and full jitter, joins the
  channel it was in again (a new membership, so a new ``sender_id``) and only
  then sends the requests that were made while it was disconnected. Those wait
  in a queue of at most ``max_queue`` requests; one more raises
  :class:`QueueFull` at once. The requests in flight when a connection closes
  raise :class:`ConnectionLost`.
- **Frame limits.** A client message over 32 KB is sent as several frames of at
  most 32 KB each (API Gateway closes the connection on a bigger frame), and a
  message over 128 KB raises :class:`FrameTooLarge` before anything is sent
  (API Gateway would close the connection).

- **Nothing lost across a reconnect, nothing twice.** On a server with
  history on (``historySeconds``), every ``joinSuccess`` carries the join's
  ``position``; the client keeps the newest of it and of the ids of the
  messages it received, and its rejoin after a reconnect sends it as
  ``since`` (protocol §4.3): the server sends what the client missed, then
  live messages. Messages that arrive before the rejoin's reply are held,
  sorted by ``messageId`` and yielded when it comes. Every message's id is
  remembered (the last ``max_remembered``): a second copy (a replayed message
  also delivered live, or a queued chunk posted again after a crash) is
  dropped, and so are this client's own messages that a replay brings back.
  A resume that could not send everything (history off, ``since`` older than
  the history kept, more than the server replays at once) emits ``resumed``
  with ``complete`` False. Without history, messages published while the
  client is disconnected are not delivered to it (protocol §5).

The library needs ``websockets`` (``pip install 'channel-server[client]'``);
importing this module does not, so its names can be imported anywhere.
"""

from __future__ import annotations

from .channel_client import (DEFAULT_MAX_IN_FLIGHT, DEFAULT_PING_INTERVAL, DEFAULT_REPLY_TIMEOUT, ChannelClient,
                             ClientEvent)
from .errors import (ChannelClientError, ClientClosed, ConnectFailed, ConnectionLost, FrameTooLarge, GatewayError,
                     JoinFailed, PublishFailed, QueueFull, ReplyTimeout, RequestFailed, ServerError)
from .frames import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, Joined, Message, Published, encode, fragments

__all__ = [
    "ChannelClient", "ClientClosed", "ChannelClientError", "ClientEvent", "ConnectFailed", "ConnectionLost",
    "FrameTooLarge", "GatewayError", "JoinFailed", "Joined", "Message", "PublishFailed", "Published",
    "QueueFull", "ReplyTimeout", "RequestFailed", "ServerError",
    # the defaults, the frame limits and the frame codec, importable from here as before the split
    "DEFAULT_MAX_IN_FLIGHT", "DEFAULT_PING_INTERVAL", "DEFAULT_REPLY_TIMEOUT", "MAX_FRAME_BYTES", "MAX_MESSAGE_BYTES",
    "encode", "fragments",
]
