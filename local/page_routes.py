"""The page to try channels, served by local mode beside its stage: ``GET /``
(``page/index.html``, told the stage) and the script and style it loads.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Awaitable, Callable

from aiohttp import web

#: The page to try channels, and the files it loads, with their content types.
PAGE_FILES = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # its own script and style only; WebSockets anywhere, so it can try a deployed stack too
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}
_STAGE_META = '<meta name="channel-server-stage" content="{}">'


def page_routes(stage: str) -> list[web.RouteDef]:
    """``GET /``: the page to try channels (``page/index.html``, told the stage
    in its ``<meta>``), and ``GET /page.js``, ``/page.css``. Stage names have no
    dots, so these never shadow ``/{stage}``. Read on each request, from the
    installed package's files."""
    folder = resources.files(__package__) / "page"

    def serve(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            text = (folder / name).read_text(encoding="utf-8")
            if name == "index.html":
                text = text.replace(_STAGE_META.format(""), _STAGE_META.format(html.escape(stage)), 1)
            return web.Response(text=text, content_type=content_type, charset="utf-8", headers=PAGE_HEADERS)
        return handler

    return [web.get("/" if name == "index.html" else f"/{name}", serve(name, content_type))
            for name, content_type in PAGE_FILES.items()]
