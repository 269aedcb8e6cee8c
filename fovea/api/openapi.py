"""The OpenAPI document's error responses: every status an operation can answer, each with
OpenAI's error body (``fovea.protocol.errors``), in one place.

Most statuses follow from what every request goes through, so they are derived here from the
operation rather than declared on 60 routes: the API key (400 for two Authorization headers,
401, 403, 429 for a flood of bad keys, 503 when the database is unreachable), the request's
parameters and body (400: Fovea
renders validation errors as 400, never FastAPI's 422), an object named in the path (404), and,
for methods with a body, the body limits (413, and 429 when the server's in-flight bytes are
spent) and a full disk (507). What only some routes answer (the models' 404, 502 and 504, a
batch's 409) they declare themselves with ``responses=errors(...)``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from fovea.protocol.errors import ErrorResponse

ERRORS: dict[int, str] = {
    400: "The request is invalid: a parameter, a body field, a header or the JSON itself",
    401: "The API key is missing, unknown, revoked, expired or lacks the scope",
    403: "The key's service account lacks a role that allows this on the folder",
    404: "No such object (or model) in the key's folder",
    409: "The object's state does not allow this",
    413: "The request body is over the server's limit",
    429: "A quota is spent, the server is busy, or too many bad keys came from this address: "
    "retry after Retry-After",
    500: "The server had an error processing the request",
    502: "An upstream replica of the model failed",
    503: "The model is loading, or the database or the quota counters are unreachable: retry",
    504: "The model took too long to answer",
    507: "The disk of the files or of the database is full",
}

# What generation routes answer besides the rest: the model unknown (404), over a quota (429),
# its upstream failing (502), loading or without replicas (503), too slow (504).
GENERATION_ERRORS = (404, 429, 502, 503, 504)

_BODY_METHODS = frozenset({"post", "put", "patch", "delete"})
_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the statuses a route answers beyond those derived for every route."""
    return {status: {"description": ERRORS[status]} for status in statuses}


def event_stream(description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that answers 200 as server-sent events too."""
    stream = {"schema": {"type": "string", "description": description}}
    return {200: {"content": {"text/event-stream": stream}}}


def install_openapi(app: FastAPI) -> None:
    """Complete the document FastAPI generates with every operation's error responses."""
    generate = app.openapi
    completed: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI until its routes change
        if not completed or completed[0] is not schema:
            document_errors(schema)
            completed[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_errors(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, methods in schema.get("paths", {}).items():
        for method, operation in methods.items():
            _complete(operation, method, path)


def _complete(operation: dict[str, Any], method: str, path: str) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    for status in sorted(_derived(operation, method, path)):
        responses.setdefault(str(status), {"description": ERRORS[status]})
    for status, response in responses.items():
        if int(status) >= 400:
            response.setdefault("content", {"application/json": {"schema": _ERROR_SCHEMA}})


def _derived(operation: dict[str, Any], method: str, path: str) -> set[int]:
    statuses = {500}
    parameters = operation.get("parameters", [])
    if operation.get("security"):
        statuses |= {400, 401, 403, 429, 503}
    if parameters or "requestBody" in operation:
        statuses.add(400)
    if any(parameter["in"] == "path" for parameter in parameters):
        statuses.add(404)
    if method in _BODY_METHODS:
        statuses |= {413, 429, 507}
    return statuses
