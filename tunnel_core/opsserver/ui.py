"""The operator UI page and its static assets (plain files in ``static/``: no build step, nothing remote).

``index.html`` is served with the tunnel id and version filled in on the server, so the page
names its tunnel even before (or without) JavaScript; everything else is fetched from the
JSON APIs by ``app.js``.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from tunnel_core import __version__

if TYPE_CHECKING:
    from tunnel_core.opsserver.context import OpsContext

NO_CACHE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache", "Expires": "0"}
ASSET_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "styles.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# The page may load only its own scripts and styles and talk only to this listener.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@cache
def _asset(name: str) -> bytes:
    return resources.files("tunnel_core.opsserver").joinpath("static", name).read_bytes()


def render_index(tunnel_id: str) -> str:
    page = _asset("index.html").decode("utf-8")
    return page.replace("{{TUNNEL_ID}}", html.escape(tunnel_id)).replace("{{VERSION}}", html.escape(__version__))


def routes(ctx: OpsContext) -> list[Route]:
    async def index(_: Request) -> Response:
        headers = {**NO_CACHE, "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}
        return HTMLResponse(render_index(ctx.state.tunnel_id), headers=headers)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        media = ASSET_TYPES.get(name)
        if media is None:
            return PlainTextResponse("not found", status_code=404)
        return Response(_asset(name), media_type=media, headers={**NO_CACHE, "X-Content-Type-Options": "nosniff"})

    async def favicon(_: Request) -> Response:
        return Response(status_code=204)

    return [
        Route("/", index, methods=["GET"]),
        Route("/ui", index, methods=["GET"]),
        Route("/ui/", index, methods=["GET"]),
        Route("/assets/{name}", asset, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
    ]
