"""Renders every error, JSON or SSE, in OpenAI's shape: the one place errors become responses."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from fovea.errors import FoveaError, InvalidRequestError, MethodNotAllowedError, NotFoundError
from fovea.store.database import database_error

log = logging.getLogger(__name__)

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def error_response(error: FoveaError) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=error.headers)


def sse_error(error: FoveaError) -> str:
    """The one event a stream sends when it fails after its first byte."""
    return f"data: {json.dumps(error.to_body())}\n\n"


def sse_error_event(error: FoveaError, sequence_number: int) -> str:
    """The same, as the Responses API's typed ``error`` event (the last of its stream)."""
    event = {**error.to_body()["error"], "type": "error", "sequence_number": sequence_number}
    return f"event: error\ndata: {json.dumps(event)}\n\n"


def validation_error(exc: RequestValidationError) -> InvalidRequestError:
    first = exc.errors()[0]
    location = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    if first.get("type") == "json_invalid":
        return InvalidRequestError(
            f"The request body is not valid JSON: {first.get('msg')}",
            code="invalid_json",
        )
    param = _param_path(location)
    message = first.get("msg", "invalid value")
    detail = f"Invalid value for '{param}': {message}" if param else f"Invalid request: {message}"
    extra = len(exc.errors()) - 1
    if extra:
        detail += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return InvalidRequestError(detail, param=param or None)


def _param_path(location: list[str]) -> str:
    path = ""
    for part in location:
        if part.isdigit():
            path += f"[{part}]"
        elif part in ("text", "image_url") and path.endswith("]"):
            # pydantic names the union member it tried; the client's path does not have it
            continue
        else:
            path += f".{part}" if path else part
    return path


def allowed_methods(request: Request) -> list[str]:
    """Every method a route serves on the request's path, for a 405's ``Allow`` (Starlette's
    names only the first route's, and a path often has a route per method)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FoveaError)
    async def _fovea(request: Request, exc: FoveaError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        error: FoveaError
        if exc.status_code == 404:
            error = NotFoundError(f"Unknown path {request.url.path}")
        elif exc.status_code == 405:
            error = MethodNotAllowedError(
                f"Method {request.method} is not allowed on {request.url.path}",
                headers={"Allow": ", ".join(allowed_methods(request))},
            )
        else:
            error = InvalidRequestError(str(exc.detail))
        return error_response(error)

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # A query outside the transaction helper: rendered as the helper would.
        error = database_error(exc)
        if error.status_code == 500:
            log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(FoveaError("The server had an error processing your request."))
