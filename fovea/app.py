"""The one app factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from fovea import __version__
from fovea.api import (
    batches,
    chat,
    datasets,
    embeddings,
    files,
    health,
    iam,
    me,
    metrics,
    models,
    responses_api,
    usage,
)
from fovea.api.admission import ByteBudget
from fovea.api.errors import install_error_handlers
from fovea.api.middleware import BodyLimitMiddleware, RequestIdMiddleware, UploadLimit
from fovea.api.openapi import install_openapi
from fovea.api.web import install_web
from fovea.engine.factory import create_engine
from fovea.observability.access import AccessMiddleware
from fovea.services.container import EngineFactory, build_services
from fovea.settings import Settings, load_catalog


def create_app(settings: Settings, *, engine_factory: EngineFactory = create_engine) -> FastAPI:
    """Build the ASGI app; models start loading in the background when it starts."""
    catalog = load_catalog(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings, catalog, engine_factory)
        app.state.services = services
        if settings.preload_models:
            services.preload()
        services.resume()
        runner = asyncio.create_task(services.batch_runner.run_forever(), name="batch runner")
        grpc_server = None
        if settings.grpc_port is not None:
            from fovea.grpc.server import build_grpc_server

            advertised = settings.grpc_advertised_address or f"{settings.host}:{settings.grpc_port}"
            grpc_server = build_grpc_server(
                services, settings.host, settings.grpc_port, advertised, settings.grpc_tls()
            )
            await grpc_server.start()
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(grace=5)
            runner.cancel()
            with suppress(asyncio.CancelledError):
                await runner
            await services.aclose()

    app = FastAPI(
        title="Fovea",
        version=__version__,
        summary="A self-hosted, OpenAI-compatible AI Studio for vision-language models",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app)
    app.router.routes.append(chat.route)  # before chat.router's declaration of the same path
    routers = (
        chat.router,
        embeddings.router,
        models.router,
        files.router,
        batches.router,
        datasets.router,
        usage.router,
        me.router,
        responses_api.router,
    )
    for router in (*routers, iam.router, health.router, metrics.router):
        app.include_router(router)
    if settings.web_ui:
        install_web(app)
    budget = ByteBudget(settings.max_inflight_request_bytes, settings.admission_wait_s)
    app.state.request_budget = budget
    uploads = UploadLimit(
        frozenset({"/v1/files"}), settings.max_file_bytes, put_prefixes=(datasets.UPLOAD_PREFIX,)
    )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_request_bytes, budget=budget, uploads=uploads
    )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(AccessMiddleware)  # outermost: it times and logs every response
    return app
