"""What every gRPC method shares: the caller's key from metadata, errors as gRPC statuses."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from fovea.errors import FoveaError, InvalidRequestError
from fovea.grpc.status import abort
from fovea.iam.apikeys import api_key_from_authorization
from fovea.iam.types import Principal
from fovea.services.access import AccessControl

log = logging.getLogger(__name__)

Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")
Method = Callable[[Servicer, Request, grpc.aio.ServicerContext], Awaitable[Response]]


async def caller(access: AccessControl, context: grpc.aio.ServicerContext) -> Principal:
    """The principal of the ``authorization`` metadata (``Api-Key <key>`` or ``Bearer <key>``).

    Several ``authorization`` entries are refused, never one of them picked; a refused key
    counts against the peer's address, as over HTTP."""
    values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
    if len(values) > 1:
        raise InvalidRequestError(
            f"The call has {len(values)} authorization metadata entries; send exactly one",
            code="duplicate_authorization",
        )
    key = api_key_from_authorization(str(values[0]) if values else None)
    return await access.authenticate(key, peer_address(context.peer()))


def peer_address(peer: str) -> str | None:
    """The client's address in gRPC's peer string (``ipv4:10.0.0.1:5000``, ``ipv6:[::1]:5000``)."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None  # a Unix socket or an in-process channel: not counted
    return rest.rpartition(":")[0].strip("[]") or None


def unary(method: Method[Servicer, Request, Response]) -> Method[Servicer, Request, Response]:
    """Fovea's errors become the status codes the cloud uses, with Fovea's messages; anything
    unexpected is logged and answered INTERNAL with a generic message."""

    @functools.wraps(method)
    async def call(self: Servicer, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except FoveaError as error:
            await abort(context, error)
        except Exception:
            log.exception("gRPC %s failed", method.__qualname__)
            await abort(context, FoveaError("The server had an error processing your request."))

    return call


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def set_timestamps(message: Any, **values: datetime | None) -> None:
    for name, value in values.items():
        stamp = timestamp(value)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
