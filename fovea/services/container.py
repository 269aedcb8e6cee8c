"""Builds the services one server process runs on, and shuts them down."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis

from fovea.engine.base import LoadedModel
from fovea.engine.factory import create_engine
from fovea.engine.registry import EngineKey, EngineRegistry
from fovea.iam.service import IamService
from fovea.media.fetch import FetchPolicy, ImageFetcher
from fovea.media.images import ImageLimits
from fovea.observability.metrics import Metrics
from fovea.services.access import AccessControl
from fovea.services.access_changes import AccessChanges
from fovea.services.auth_throttle import AuthThrottle
from fovea.services.batches.inference import BatchInferenceService
from fovea.services.batches.runner import BatchRunner
from fovea.services.batches.service import BatchService
from fovea.services.catalog import Catalog
from fovea.services.chat import ChatLimits, ChatService
from fovea.services.chat_events import CompletionObserver
from fovea.services.datasets.service import DatasetService
from fovea.services.datasets.signing import UrlSigner, load_or_create_key
from fovea.services.embeddings import EmbeddingLimits, EmbeddingsService
from fovea.services.files import FileService
from fovea.services.iam import IamAdminService
from fovea.services.images import ImageIntake
from fovea.services.models import ModelsService
from fovea.services.operations import OperationService
from fovea.services.quotas import LocalCounters, QuotaCounters, RateLimiter
from fovea.services.redis_client import connect as connect_redis
from fovea.services.request_log import RequestLog, RequestLogConfig
from fovea.services.responses import ResponsesService
from fovea.services.storage import DirectoryStorage
from fovea.services.usage import UsageRecorder, UsageService
from fovea.settings import BranchConfig, CatalogConfig, DeploymentConfig, Settings
from fovea.store.batches import BatchStore
from fovea.store.database import Database
from fovea.store.datasets import DatasetStore
from fovea.store.files import FileStore
from fovea.store.operations import OperationStore
from fovea.store.quota_counters import QuotaCounterStore
from fovea.store.quotas import QuotaStore
from fovea.store.request_log import RequestLogStore
from fovea.store.responses import ResponseStore
from fovea.store.usage import UsageStore


@dataclass
class Services:
    database: Database
    access: AccessControl
    engines: EngineRegistry
    catalog: Catalog
    chat: ChatService
    embeddings: EmbeddingsService
    responses: ResponsesService
    models: ModelsService
    fetcher: ImageFetcher
    files: FileService
    batches: BatchService
    batch_runner: BatchRunner
    datasets: DatasetService
    batch_tasks: BatchInferenceService
    operations: OperationService
    iam: IamAdminService
    metrics: Metrics | None  # None when FOVEA_METRICS_ENABLED is off
    usage: UsageService
    usage_recorder: UsageRecorder
    quotas: RateLimiter
    request_log: RequestLog | None  # None unless FOVEA_REQUEST_LOG is on
    access_changes: AccessChanges
    redis: Redis | None  # None unless FOVEA_REDIS_URL is set

    def resume(self) -> None:
        """Work a stopped server left unfinished starts again (call on the event loop)."""
        self.usage_recorder.start()
        self.quotas.start()
        self.access_changes.start()
        self.responses.start_sweeping()
        if self.request_log is not None:
            self.request_log.start()
        self.datasets.resume()
        self.operations.resume()

    def preload(self) -> None:
        """Start loading every deployment marked ``preload`` (latest branch) in the background."""
        for deployment in self.catalog.deployments:
            if deployment.preload:
                self.engines.start(EngineKey(deployment.name, "latest"))

    async def aclose(self) -> None:
        await self.operations.aclose()
        await self.responses.aclose()
        await self.datasets.aclose()
        await self.engines.aclose()
        await self.usage_recorder.aclose()  # after the engines: their last completions count
        await self.quotas.aclose()
        await self.access_changes.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.request_log is not None:
            await self.request_log.aclose()
        await self.fetcher.aclose()
        self.database.dispose()


EngineFactory = Callable[[DeploymentConfig, BranchConfig], LoadedModel]


def replica_id() -> str:
    """This process among the replicas sharing one database: host, pid and a random tail (a
    restarted process with a recycled pid is still another replica)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


def build_services(
    settings: Settings,
    catalog_config: CatalogConfig,
    engine_factory: EngineFactory = create_engine,
) -> Services:
    database = Database(settings.sqlalchemy_url)
    database.migrate()
    catalog = Catalog(catalog_config)

    def factory(key: EngineKey) -> LoadedModel:
        model = catalog.resolve_key(key.model, key.branch)
        return engine_factory(model.deployment, model.config)

    engines = EngineRegistry(factory)
    iam = IamService(database)
    throttle = (
        AuthThrottle(settings.auth_failures_per_minute)
        if settings.auth_failures_per_minute
        else None
    )
    access = AccessControl(iam, cache_ttl_s=settings.auth_cache_ttl_s, throttle=throttle)
    redis = connect_redis(settings.redis_url) if settings.redis_url else None
    access_changes = AccessChanges(access, redis)
    fetcher = ImageFetcher(FetchPolicy.from_settings(settings))
    # Told of every finished completion (usage, rate limits, metrics, the request log).
    usage_store = UsageStore(database)
    usage_recorder = UsageRecorder(usage_store)
    quotas = RateLimiter(
        QuotaStore(database),
        settings.max_concurrent_generations_per_folder,
        counters=_quota_counters(settings, database, redis),
    )
    quotas.load()
    observers: list[CompletionObserver] = [quotas]
    if settings.usage_records:
        observers.append(usage_recorder)
    request_log = _request_log(settings, database)
    if request_log is not None:
        observers.append(request_log)
    metrics = None
    if settings.metrics_enabled:
        metrics = Metrics(engines, BatchStore(database).unfinished_lines, settings.metrics_token)
        observers.append(metrics)
    chat = ChatService(
        catalog=catalog,
        engines=engines,
        access=access,
        images=ImageIntake(
            ImageLimits.from_settings(settings), settings.image_decode_threads, fetcher
        ),
        quotas=quotas,
        limits=ChatLimits(
            model_load_wait_s=settings.model_load_wait_s,
            generation_timeout_s=settings.generation_timeout_s,
        ),
        observers=observers,
    )
    embeddings = EmbeddingsService(
        catalog=catalog,
        engines=engines,
        access=access,
        quotas=quotas,
        limits=EmbeddingLimits(
            model_load_wait_s=settings.model_load_wait_s,
            timeout_s=settings.generation_timeout_s,
        ),
        usage=usage_recorder if settings.usage_records else None,
    )
    models = ModelsService(
        catalog=catalog, engines=engines, access=access, started_at=int(time.time())
    )
    files = FileService(FileStore(database), access, DirectoryStorage(settings.storage_dir))
    files.remove_stale_partials()
    files.remove_orphans()
    responses = ResponsesService(
        chat=chat,
        store=ResponseStore(database),
        access=access,
        files=files,
        max_image_bytes=settings.max_image_bytes,
        retention=timedelta(days=settings.response_retention_days),
    )
    runner = BatchRunner(
        store=BatchStore(database),
        files=files,
        chat=chat,
        responses=responses,
        embeddings=embeddings,
        concurrency=settings.batch_concurrency,
        owner=replica_id(),
        lease_s=settings.batch_lease_s,
    )
    batch_store = BatchStore(database)
    batches = BatchService(store=batch_store, files=files, access=access, runner=runner)
    dataset_store = DatasetStore(database)
    operation_store = OperationStore(database)
    key = settings.signing_key
    signer = UrlSigner(
        key.get_secret_value().encode() if key else load_or_create_key(settings.signing_key_path),
        settings.http_base_url,
        settings.signed_url_ttl_s,
    )
    datasets = DatasetService(
        store=dataset_store,
        operations=operation_store,
        files=files,
        access=access,
        signer=signer,
        max_bytes=settings.max_file_bytes,
    )
    batch_tasks = BatchInferenceService(
        batches=batches,
        store=batch_store,
        datasets=dataset_store,
        operations=operation_store,
        files=files,
        catalog=catalog,
        access=access,
        runner=runner,
    )
    operations = OperationService(
        store=operation_store, datasets=dataset_store, tasks=batch_tasks, chat=chat, access=access
    )
    return Services(
        database=database,
        access=access,
        engines=engines,
        catalog=catalog,
        chat=chat,
        embeddings=embeddings,
        responses=responses,
        models=models,
        fetcher=fetcher,
        files=files,
        batches=batches,
        batch_runner=runner,
        datasets=datasets,
        batch_tasks=batch_tasks,
        operations=operations,
        iam=IamAdminService(iam, access, access_changes),
        metrics=metrics,
        usage=UsageService(usage_store, usage_recorder, access),
        usage_recorder=usage_recorder,
        request_log=request_log,
        quotas=quotas,
        access_changes=access_changes,
        redis=redis,
    )


def _quota_counters(settings: Settings, database: Database, redis: Redis | None) -> QuotaCounters:
    """Where the replicas count quotas together: Redis when configured, else PostgreSQL; a
    server on SQLite (one machine, no replicas) counts them in its own memory."""
    if redis is not None:
        from fovea.services.quotas.redis_counters import RedisCounters

        return RedisCounters(redis, replica_id(), lease_s=settings.quota_lease_s)
    if not database.is_sqlite:
        from fovea.services.quotas.database_counters import DatabaseCounters

        store = QuotaCounterStore(database)
        return DatabaseCounters(store, replica_id(), lease_s=settings.quota_lease_s)
    return LocalCounters()


def _request_log(settings: Settings, database: Database) -> RequestLog | None:
    if not settings.request_log:
        return None
    retention = timedelta(days=settings.request_log_retention_days)
    return RequestLog(RequestLogStore(database), RequestLogConfig(retention=retention))
