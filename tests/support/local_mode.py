"""Local mode's world in tests, read once per test process.

``LocalServer`` reads what it serves in a child process (``program.load_world_child``
runs ``program.load_world``), so that local mode never keeps Pulumi's runtime
in memory. That is a Pulumi start-up, about 2 s of CPU, for every server a
test starts. ``served_world(**options)`` is the world that child reads for
``LocalServer(**options)`` when no program is served (ChannelServer with its
defaults and what the options ask of it, such as ``backend``): the same
``load_world`` with the same JSON request, run in the test process, once per
distinct request. Tests that start many servers pass it on::

    with running(port=0, world=served_world()) as server: ...
    with running(port=0, backend=url, world=served_world(backend=url)) as server: ...

The child itself stays under test: with no program in test_local_authorizer's
``--authorizer`` server, with a program in test_local's consumer programs,
test_local_authorizer's own-authorizer program and every run of the command
(test_local_command).
"""

from __future__ import annotations

import functools
import json
from typing import Any


#: The options that change what is served without a program that this takes
#: (a test that needs a program, a stack, a stage or an authorizer starts a
#: server that reads its world itself).
WORLD_OPTIONS = frozenset({"backend", "heartbeat_seconds", "server_publish"})


def served_world(**options: Any) -> Any:
    """The World ``LocalServer(port=0, **options)`` would read without a program."""
    from channel_server.local.server import LocalServer

    assert set(options) <= WORLD_OPTIONS, f"served_world takes only {sorted(WORLD_OPTIONS)}"
    request = LocalServer(port=0, **options)._default_args()
    return _load_world(json.dumps(request, sort_keys=True))


@functools.cache
def _load_world(request: str) -> Any:
    from channel_server.local.program import load_world

    # as LocalServer._load_world asks its child: no program, stack dev, no
    # component, no stage override, the command line's ChannelServer args
    return load_world(None, "dev", None, False, None, json.loads(request))
