"""The explorer's web server: a Starlette app around one `Explorer`, run by uvicorn.

Requests never name a file: the page and its assets are read from the package once, when the
app is made, into a table looked up by exact name; layers and downloads are found by the ids the
explorer gives them. An upload is read up to the size limit and checked (`uploads`) before it
is saved under a name the explorer chooses. The work of a request (encoding a query, the dot
products, colouring, writing a COG) runs in a worker thread, so the event loop keeps answering
other users while one map is made. Bad input answers 400 (413 for a too-large upload) with a
one-line reason; anything else 500, and the server goes on.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prom3e_geo.errors import InputError

from .explorer import Explorer
from .maplayers import Json
from .uploads import check_upload

log = logging.getLogger(__name__)

ASSETS = {  # name in the page -> (file in the package's static folder, media type)
    "app.js": ("app.js", "text/javascript"),
    "app.css": ("app.css", "text/css"),
    "recorder.js": ("recorder.js", "text/javascript"),
    "leaflet/leaflet.js": ("vendor/leaflet/leaflet.js", "text/javascript"),
    "leaflet/leaflet.css": ("vendor/leaflet/leaflet.css", "text/css"),
    "leaflet/LICENSE": ("vendor/leaflet/LICENSE", "text/plain"),
    **{
        f"leaflet/images/{n}": (f"vendor/leaflet/images/{n}", "image/png")
        for n in (
            "layers.png",
            "layers-2x.png",
            "marker-icon.png",
            "marker-icon-2x.png",
            "marker-shadow.png",
        )  # fmt: skip
    },
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: https: blob:; "
    "media-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
}


def load_assets() -> dict[str, tuple[bytes, str]]:
    """The page and its assets, read from the package (name -> bytes, media type)."""
    static = resources.files("prom3e_geo.app") / "static"
    table = {name: ((static / file).read_bytes(), kind) for name, (file, kind) in ASSETS.items()}
    table[""] = ((static / "index.html").read_bytes(), "text/html; charset=utf-8")
    return table


def create_app(explorer: Explorer) -> Starlette:
    """The web app of `explorer` (see the module docstring for what it answers)."""
    assets = load_assets()

    def asset(name: str) -> Response:
        if name not in assets:
            return JSONResponse({"error": "not found"}, 404)
        body, kind = assets[name]
        return Response(body, media_type=kind, headers=SECURITY_HEADERS)

    async def index(request: Request) -> Response:
        return asset("")

    async def static(request: Request) -> Response:
        return asset(request.path_params["name"])

    async def info(request: Request) -> Response:
        return await answer(explorer.info)

    async def query_upload(request: Request) -> Response:
        limit = explorer.options.max_upload
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return too_large(limit)
        data = bytearray()
        async for part in request.stream():
            data += part
            if len(data) > limit:
                return too_large(limit)
        name = request.query_params.get("filename", "upload")
        mode = request.query_params.get("mode")

        def work() -> Json:
            upload = check_upload(bytes(data), name, limit)
            return explorer.query_upload(upload, mode).summary()

        return await answer(work)

    async def query_name(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return error("the request is not JSON", 400)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return error('send {"name": "a species name", "mode": "recon"}', 400)
        mode = body.get("mode") if isinstance(body.get("mode"), str) else None
        return await answer(lambda: explorer.query_name(body["name"], mode).summary())

    async def uncertainty(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return error("the request is not JSON", 400)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("layer"), str)
            or not isinstance(context := body.get("context"), list)
            or not all(isinstance(m, str) for m in context)
        ):
            return error('send {"layer": "novelty", "context": ["sat", "loc"]}', 400)
        return await answer(
            lambda: {"layers": [x.summary() for x in explorer.uncertainty(body["layer"], context)]}
        )

    async def layer_image(request: Request) -> Response:
        try:
            layer = explorer.layer(request.path_params["id"])
        except KeyError:
            return error("no such layer", 404)
        body = await run_in_threadpool(layer.web_png)
        return Response(body, media_type="image/png", headers=SECURITY_HEADERS)

    async def download(request: Request) -> Response:
        layer_id, kind = request.path_params["id"], request.path_params["kind"]
        try:
            body, name = await run_in_threadpool(explorer.download, layer_id, kind)
        except KeyError:
            return error("no such layer or download", 404)
        except InputError as exc:
            return error(str(exc), 400)
        media = (
            "image/tiff; application=geotiff; profile=cloud-optimized"
            if kind == "tif"
            else "image/png"
        )
        headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
        return Response(body, media_type=media, headers=headers)

    async def cell(request: Request) -> Response:
        try:
            lon = float(request.query_params["lon"])
            lat = float(request.query_params["lat"])
        except (KeyError, ValueError):
            return error("give lon and lat in degrees", 400)
        return await answer(lambda: explorer.cell(lon, lat))

    return Starlette(
        routes=[
            Route("/", index),
            Route("/static/{name:path}", static),
            Route("/api/info", info),
            Route("/api/query", query_upload, methods=["POST"]),
            Route("/api/species", query_name, methods=["POST"]),
            Route("/api/uncertainty", uncertainty, methods=["POST"]),
            Route("/api/cell", cell),
            Route("/api/layers/{id}/image.png", layer_image),
            Route("/api/layers/{id}/download.{kind}", download),
        ]
    )


async def answer(work: Callable[[], Json]) -> Response:
    """Run `work` in a worker thread; its result as JSON, an input error as 400 with its reason,
    anything else as 500 (logged; the server goes on)."""
    try:
        return JSONResponse(await run_in_threadpool(work), headers=SECURITY_HEADERS)
    except InputError as exc:
        return error(str(exc), 400)
    except Exception as exc:
        log.exception("request failed")
        return error(f"internal error: {type(exc).__name__}: {exc}", 500)


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=SECURITY_HEADERS)


def too_large(limit: int) -> JSONResponse:
    return error(f"the upload is larger than the limit of {limit / 2**20:.1f} MiB", 413)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one. Failures are the world's
    (a port in use): a one-line OSError for the caller to report."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def serve(explorer: Explorer, sock: socket.socket) -> None:
    """Serve the explorer on a bound socket until interrupted (uvicorn; the requests' work in
    anyio's pool of worker threads)."""
    import uvicorn

    config = uvicorn.Config(create_app(explorer), log_level="warning")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        explorer.close()
