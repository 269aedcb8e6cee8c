"""Fovea's errors as gRPC statuses: the same messages, the codes the cloud uses for them."""

from __future__ import annotations

from typing import NoReturn

import grpc

from fovea.errors import FoveaError

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
    507: grpc.StatusCode.RESOURCE_EXHAUSTED,  # a full disk (files or database)
}


def status_code(error: FoveaError) -> grpc.StatusCode:
    return code_for(error.status_code)


def code_for(http_status: int) -> grpc.StatusCode:
    """The gRPC code for an HTTP status of Fovea's (499: the client cancelled)."""
    return _CODES.get(http_status, grpc.StatusCode.INTERNAL)


async def abort(context: grpc.aio.ServicerContext, error: FoveaError) -> NoReturn:
    await context.abort(status_code(error), error.message)
    raise AssertionError("context.abort raises")  # for type checkers
