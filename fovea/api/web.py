"""The web playground and console (``fovea.web``): the page at ``/`` and ``/playground``, its
files under ``/web/``.

The page's Content-Security-Policy allows nothing but this origin (images also as ``data:`` and
``blob:`` URLs, the pictures a user picks): no external request can leave the page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from fovea.web import INDEX_HTML, STATIC_DIR

ASSETS_PREFIX = "/web"
PAGES = ("/", "/playground", "/console")

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


async def page() -> FileResponse:
    return FileResponse(INDEX_HTML, media_type="text/html", headers=PAGE_HEADERS)


for path in PAGES:
    router.add_api_route(path, page, methods=["GET"])


class _Assets(StaticFiles):
    """The page's files, revalidated on every load so an upgraded server is never half-cached."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install_web(app: FastAPI) -> None:
    """Serve the page and its files."""
    app.include_router(router)
    app.mount(ASSETS_PREFIX, _Assets(directory=STATIC_DIR), name="web")
