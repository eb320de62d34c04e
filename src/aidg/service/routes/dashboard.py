"""``GET /dashboard``: the real-time monitor page (memo §2.3) and its static files, served by the service itself.

The page holds no data: it reads ``/v1/monitor``, ``/v1/rollout`` and
``/v1/decisions`` with the key a person types in (kept in the browser's
localStorage), so the routes here need no key. Files come only from the
``static`` folder next to this package (a fixed list: no path is ever built
from the request) plus ``plotly.min.js`` from the installed ``plotly`` Python
package, so the page works with no internet (never a CDN).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata, resources
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["dashboard"])

PLOTLY = "plotly.min.js"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# the page's own scripts and styles only; plotly injects <style> elements, hence 'unsafe-inline' for styles
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def static_dir() -> Path:
    """The folder of the page's files (inside the installed package: ``aidg/service/static``)."""
    return Path(str(resources.files("aidg.service").joinpath("static")))


@functools.cache
def static_files() -> dict[str, tuple[bytes, str, str]]:
    """Name → (content, media type, ETag) of every servable file of the static folder, read once."""
    out: dict[str, tuple[bytes, str, str]] = {}
    folder = static_dir()
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        media = MEDIA_TYPES.get(path.suffix)
        if media is None or not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes()
        out[path.name] = (body, media, f'"{hashlib.sha256(body).hexdigest()[:16]}"')
    return out


@functools.cache
def plotly_js() -> tuple[bytes, str]:
    """plotly.js as the installed ``plotly`` package ships it, and the package's version (for cache busting).

    Found through the package's metadata (``plotly`` itself is never imported: its import is slow and untyped).
    """
    try:
        dist = metadata.distribution("plotly")
    except metadata.PackageNotFoundError:  # pragma: no cover - plotly is a dependency
        raise HTTPException(404, "plotly is not installed: pip install plotly (the dashboard draws with it)") from None
    path = Path(str(dist.locate_file(f"plotly/package_data/{PLOTLY}")))
    if not path.is_file():  # pragma: no cover - every plotly wheel ships it
        raise HTTPException(404, f"the installed plotly {dist.version} has no package_data/{PLOTLY}")
    return path.read_bytes(), dist.version


def _not_modified(request: Request, etag: str, headers: dict[str, str]) -> Response | None:
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={**headers, "ETag": etag})
    return None


@router.api_route("/dashboard", methods=["GET", "HEAD"], include_in_schema=False)
async def dashboard(request: Request) -> Response:
    """The page; ``__PLOTLY_VERSION__`` in it becomes the plotly version (plotly.js is cached for a year)."""
    found = static_files().get("dashboard.html")
    if found is None:
        raise HTTPException(404, "the dashboard's files are missing from this installation (aidg/service/static)")
    body = found[0]
    _, version = plotly_js()
    html = body.decode("utf-8").replace("__PLOTLY_VERSION__", version)
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP, **SECURITY}
    return HTMLResponse(html, headers=headers)


@router.api_route("/dashboard/static/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def dashboard_static(name: str, request: Request) -> Response:
    """One file of the static folder by its exact name, or ``plotly.min.js``; 404 for anything else."""
    if name == PLOTLY:
        body, version = plotly_js()
        etag = f'"plotly-{version}"'
        headers = {"Cache-Control": "public, max-age=31536000, immutable", **SECURITY}
        return _not_modified(request, etag, headers) or Response(
            body, media_type=MEDIA_TYPES[".js"], headers={**headers, "ETag": etag}
        )
    found = static_files().get(name)
    if found is None or name == "dashboard.html":
        raise HTTPException(404, f"no dashboard file {name!r}")
    body, media, etag = found
    headers = {"Cache-Control": "no-cache", **SECURITY}
    return _not_modified(request, etag, headers) or Response(body, media_type=media, headers={**headers, "ETag": etag})


__all__ = ["router"]
