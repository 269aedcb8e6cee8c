"""Fovea's one exception tree.

Every failure a client can see is raised as a subclass of ``FoveaError`` and rendered once, by
``fovea.api.errors``, as an OpenAI-shaped body ``{"error": {message, type, param, code}}``::

    FoveaError (500 server_error)
    ├── InvalidRequestError (400)
    │   ├── ModelUriError            bad model URI
    │   ├── ModelKindError           a chat model asked for embeddings, or the reverse
    │   ├── FolderMismatchError      URI or header folder is not the key's folder
    │   ├── ImageError               undecodable or invalid image, or a refused image URL
    │   │   └── ImageFetchError      an allowed image URL could not be fetched
    │   ├── TooManyImagesError       over the per-request or per-model image limit
    │   └── ContextLengthError       prompt (plus requested output) over the context window
    ├── AuthenticationError (401)    missing, unknown, revoked, expired or out-of-scope key
    ├── PermissionDeniedError (403)  the service account lacks the role on the folder
    ├── NotFoundError (404)
    │   └── ModelNotFoundError
    ├── MethodNotAllowedError (405)
    ├── PayloadTooLargeError (413)   body or image over a configured limit
    ├── RateLimitError (429)
    ├── UpstreamError (502)          an upstream replica failed or answered garbage
    ├── ModelNotReadyError (503)     model loading or failed to load
    │   └── NoReplicaError           every replica of an upstream deployment is down
    ├── DatabaseUnavailableError (503) the database is unreachable or busy: retry
    ├── RateLimiterUnavailableError (503) the shared quota counters (Redis) are unreachable
    ├── GenerationTimeoutError (504)
    ├── InsufficientStorageError (507) the disk of the files or of the database is full
    └── EngineError (500)            the engine failed on valid input: a bug, logged

Library exceptions (llama_cpp, PIL, httpx, SQLAlchemy) are translated into this tree where they
occur.
"""

from __future__ import annotations

from typing import ClassVar


class FoveaError(Exception):
    """Base of every error Fovea reports to a client."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def to_body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(FoveaError):
    status_code = 400
    error_type = "invalid_request_error"


class ModelUriError(InvalidRequestError):
    default_code = "invalid_model_uri"


class ModelKindError(InvalidRequestError):
    default_code = "wrong_model_kind"


class FolderMismatchError(InvalidRequestError):
    default_code = "folder_mismatch"


class ImageError(InvalidRequestError):
    default_code = "invalid_image"


class ImageFetchError(ImageError):
    default_code = "image_fetch_failed"


class TooManyImagesError(InvalidRequestError):
    default_code = "too_many_images"


class ContextLengthError(InvalidRequestError):
    default_code = "context_length_exceeded"


class AuthenticationError(FoveaError):
    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(FoveaError):
    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class NotFoundError(FoveaError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    default_code = "model_not_found"


class MethodNotAllowedError(FoveaError):
    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class ConflictError(FoveaError):
    """The object is in a state that does not allow the action (delete a running batch)."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLargeError(FoveaError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class RateLimitError(FoveaError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamError(FoveaError):
    status_code = 502
    error_type = "server_error"
    default_code = "upstream_error"


class ModelNotReadyError(FoveaError):
    status_code = 503
    error_type = "server_error"
    default_code = "model_not_ready"


class NoReplicaError(ModelNotReadyError):
    default_code = "no_healthy_replica"


class DatabaseUnavailableError(FoveaError):
    status_code = 503
    error_type = "server_error"
    default_code = "database_unavailable"


class RateLimiterUnavailableError(FoveaError):
    """Quotas cannot be checked: the counters the replicas share (Redis) failed. Refused
    rather than admitted unchecked: retry shortly."""

    status_code = 503
    error_type = "server_error"
    default_code = "rate_limiter_unavailable"


class GenerationTimeoutError(FoveaError):
    status_code = 504
    error_type = "server_error"
    default_code = "timeout"


class InsufficientStorageError(FoveaError):
    """A disk is full (files' storage or the database): nothing was stored; retry once the
    operator has freed space."""

    status_code = 507
    error_type = "server_error"
    default_code = "insufficient_storage"


class EngineError(FoveaError):
    status_code = 500
    error_type = "server_error"
    default_code = "engine_error"
