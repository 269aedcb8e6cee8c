"""Configuration: the only module that reads the environment and configuration files.

``Settings`` comes from ``FOVEA_*`` environment variables (or keyword arguments in tests);
``load_catalog`` reads the TOML model catalog it names.
"""

from __future__ import annotations

import json
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BRANCHES = ("latest", "rc", "deprecated")
Branch = Literal["latest", "rc", "deprecated"]
# What a deployment serves: chat completions, or embeddings (POST /v1/embeddings).
DeploymentKind = Literal["chat", "embedding"]

DEMO_MODEL_NAME = "gemma-3-demo"


def default_home() -> Path:
    return Path.home() / ".local" / "share" / "fovea"


class Settings(BaseSettings):
    """Server and CLI settings. Every field can be set as ``FOVEA_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FOVEA_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = 8000
    catalog: Path | None = None
    # The gRPC front for the cloud's SDK (off unless a port is given), and the host:port it
    # tells clients to use (default: host:grpc_port).
    grpc_port: int | None = None
    grpc_advertised_address: str | None = None
    # TLS for the gRPC port: a PEM certificate chain and its private key (both or neither).
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    # The HTTP base URL clients reach this server at (signed dataset upload and download
    # URLs point there); default http://<host>:<port>, a wildcard host as 127.0.0.1.
    public_url: str | None = None
    # The key signing those URLs; default a random key kept in <home>/signing.key. Replicas
    # behind one load balancer must share it.
    signing_key: SecretStr | None = None
    signed_url_ttl_s: int = Field(default=3600, ge=1)
    database_url: str | None = None
    # Where uploaded and written files' bytes live (default <home>/files): replicas sharing
    # one database point this at one shared volume (services/storage.py).
    files_dir: Path | None = None
    log_level: str = "info"
    # The web playground and console at / (fovea/web); off for an API-only server.
    web_ui: bool = True
    # Prometheus metrics at GET /metrics; off only to measure their cost.
    metrics_enabled: bool = True
    # When set, GET /metrics asks for it as "Authorization: Bearer <token>"; unset, it is open.
    metrics_token: SecretStr | None = None
    # The request log (debugging): request and response bodies kept in the database this many
    # days, images as hashes and sizes. A request sent with x-data-logging-enabled: false is
    # never kept. FOVEA_REQUEST_LOG takes on/off, true/false, yes/no or 1/0.
    request_log: bool = False
    request_log_retention_days: float = Field(default=7.0, gt=0)
    # Stored responses of the Responses API (store: true) are deleted this many days after they
    # were made (OpenAI keeps them 30), swept hourly.
    response_retention_days: float = Field(default=30.0, gt=0)

    max_request_bytes: int = 64 * 1024 * 1024
    # File uploads (POST /v1/files) stream to disk and bypass max_request_bytes; this caps
    # the multipart body instead.
    max_file_bytes: int = 2 * 1024 * 1024 * 1024
    # Admission: request bodies in flight, server-wide; more waits, then gets 429.
    # Measured (bench/burst_memory.py): 64 MiB gives a lower peak and a faster burst than 512.
    max_inflight_request_bytes: int = 64 * 1024 * 1024
    admission_wait_s: float = 10.0
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    max_images_per_request: int = 16
    image_decode_threads: int = 2

    # Remote (http/https) image URLs: off unless enabled, and then only for allowed domains
    # (an entry allows its subdomains; "*" allows every public host). allow_private lets the
    # fetcher reach private, loopback and link-local addresses: for intranets and tests only.
    image_urls_enabled: bool = False
    image_url_allowed_domains: Annotated[list[str], NoDecode] = []
    image_url_connect_timeout_s: float = 3.0
    image_url_read_timeout_s: float = 10.0
    image_url_max_redirects: int = 3
    image_url_allow_private: bool = False

    max_concurrent_generations_per_folder: int = 10
    # API keys and role bindings are cached this long: a revoked key, a new or removed role
    # binding take effect within it (expiry is exact); with Redis, changes made through the IAM
    # API reach every replica at once. 0 reads the database on every request.
    auth_cache_ttl_s: float = Field(default=2.0, ge=0)
    # Refused API keys a client address may present in a minute before the next refusal is a
    # 429 with Retry-After (valid keys still work); counted per replica. 0 turns it off.
    auth_failures_per_minute: int = Field(default=30, ge=0)
    # Redis (redis://[:password@]host:6379/0), shared by the replicas: it holds the quota
    # counters and tells every replica of revoked keys. Without it, replicas on PostgreSQL
    # count quotas in the database; a server on SQLite counts them in its own memory.
    redis_url: str | None = None
    # A replica renews its hold on the generation slots it counts every third of this; one
    # that dies (killed, its machine gone) holds them at most this long.
    quota_lease_s: float = Field(default=10.0, gt=0)
    # Batch lines in flight at once (queued in the engine behind interactive requests): enough
    # to fill every slot of a llama.cpp deployment (parallel) or several upstream replicas.
    batch_concurrency: int = Field(default=8, ge=1)
    # Replicas' runners lease batch lines (and a batch's validation and finalization) this
    # long, renewing at a third of it: a killed replica's lines go to another after it.
    batch_lease_s: float = Field(default=30.0, gt=0)
    # One usage record per finished completion (``fovea usage``); off only to measure its cost.
    usage_records: bool = True
    model_load_wait_s: float = 30.0
    generation_timeout_s: float = 600.0
    preload_models: bool = True

    @field_validator("image_url_allowed_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        """Accept a JSON list or a comma-separated string (``a.com,b.org``) from the env."""
        if not isinstance(value, str):
            return value
        if value.strip().startswith("["):
            return json.loads(value)
        return [domain.strip() for domain in value.split(",") if domain.strip()]

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("FOVEA_REDIS_URL must start with redis://, rediss:// or unix://")
        return value or None

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise ValueError("set both FOVEA_GRPC_TLS_CERT and FOVEA_GRPC_TLS_KEY, or neither")
        return self

    def grpc_tls(self) -> tuple[bytes, bytes] | None:
        """The gRPC port's PEM certificate chain and private key; None for plaintext."""
        if self.grpc_tls_cert is None or self.grpc_tls_key is None:
            return None
        try:
            return self.grpc_tls_cert.read_bytes(), self.grpc_tls_key.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the gRPC TLS certificate or key: {exc}") from exc

    @property
    def http_base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def signing_key_path(self) -> Path:
        return self.home / "signing.key"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def storage_dir(self) -> Path:
        return self.files_dir or self.home / "files"

    @property
    def catalog_path(self) -> Path:
        if self.catalog is not None:
            return self.catalog
        user_catalog = self.home / "models.toml"
        if user_catalog.exists():
            return user_catalog
        return Path(str(resources.files("fovea") / "default_models.toml"))

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'fovea.db'}"


class ReplicaConfig(BaseModel):
    """One replica of an upstream deployment: an OpenAI-compatible server Fovea forwards to."""

    model_config = ConfigDict(extra="forbid")

    # The replica's OpenAI base URL, e.g. http://10.0.0.11:8000/v1.
    url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    # The model name that replica expects in requests (vllm --served-model-name).
    model: str = Field(min_length=1)
    # The environment variable holding the replica's API key; keys never live in the catalog.
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    _api_key: str | None = PrivateAttr(default=None)

    @property
    def api_key(self) -> str | None:
        return self._api_key


class BranchConfig(BaseModel):
    """What one branch of a deployment serves: model files (llamacpp) or replicas (upstream)."""

    model_config = ConfigDict(extra="forbid")

    model: Path | None = None
    mmproj: Path | None = None
    replicas: list[ReplicaConfig] = []


class UpstreamOptions(BaseModel):
    """How Fovea talks to an upstream deployment's replicas (see docs/deploy.md)."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout_s: float = Field(default=3.0, gt=0)
    # The longest silence allowed between two bytes of an answer (streamed or not).
    read_timeout_s: float = Field(default=120.0, gt=0)
    probe_interval_s: float = Field(default=5.0, gt=0)
    probe_timeout_s: float = Field(default=2.0, gt=0)
    # Consecutive failures (5xx, broken streams) before a replica is ejected; a refused
    # connection ejects it at once.
    max_failures: int = Field(default=3, ge=1)
    # An ejected replica waits this long, then must pass a probe to be re-admitted.
    cooldown_s: float = Field(default=10.0, ge=0)
    # Replicas a request may be tried on before its first byte reaches the client.
    max_attempts: int = Field(default=3, ge=1)
    # Send a conversation's next turn and a repeated image to the replica that served them...
    affinity: bool = True
    # ...unless that replica has this many more requests in flight than the least loaded one.
    affinity_slack: int = Field(default=8, ge=0)
    # Read vLLM's load gauges (vllm:num_requests_running / _waiting) from <root>/metrics.
    metrics: bool = False
    # Pooled keep-alive connections per replica.
    max_connections: int = Field(default=256, ge=1)
    # Forwarded images are re-encoded as JPEG at this quality.
    jpeg_quality: int = Field(default=90, ge=1, le=100)


class DeploymentConfig(BaseModel):
    """One entry of the model catalog."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    backend: Literal["llamacpp", "upstream"] = "llamacpp"
    # "embedding": served at POST /v1/embeddings (llamacpp only) as emb://<folder>/<name>;
    # context_length is then the longest input, in tokens.
    kind: DeploymentKind = "chat"
    description: str = ""
    # A stand-in model (the shipped demo): clients and the playground warn that its answers
    # show the pipeline working, not a model's quality.
    demo: bool = False
    owned_by: str = "fovea"
    context_length: int = Field(default=4096, ge=64)
    max_images: int = Field(default=8, ge=0)
    max_output_tokens: int = Field(default=2048, ge=1)
    default_max_tokens: int = Field(default=512, ge=1)
    # The sampling temperature of a request that sends none (OpenAI's default is 1.0), as vLLM
    # takes one from a model's generation_config.json: the model's makers know what suits it.
    default_temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    chat_template: str | None = None
    n_threads: int | None = None
    n_gpu_layers: int = 0
    flash_attn: bool = True
    preload: bool = True
    # Vision-encoder outputs kept per loaded model, so a repeated image skips the encoder.
    image_cache_mb: int = Field(default=256, ge=0)
    # Reuse the KV cache for a prompt's prefix shared with an earlier request (per slot).
    prefix_cache: bool = True
    # llamacpp: requests decoded together, each in a slot with context_length positions of KV
    # cache (allocated at load). 4 measured best for the demo model on 2 cores: see
    # docs/benchmarks.md; above 6 a greedy answer may differ from the same request's alone.
    parallel: int = Field(default=4, ge=1, le=64)
    # What Fovea cannot discover from a remote engine (upstream only; llamacpp reads the mmproj):
    # whether it takes images, its encoder's input size (images are forwarded with their
    # shorter side at this size) and the prompt tokens an image view costs (for usage).
    vision: bool = False
    image_size: int = Field(default=896, ge=16)
    image_tokens: int = Field(default=256, ge=0)
    upstream: UpstreamOptions = Field(default_factory=UpstreamOptions)
    # Embedding deployments: the smaller sizes a request's ``dimensions`` may ask for, for a
    # model trained for it (Matryoshka): the vector is truncated, then normalised again. Empty:
    # only the model's own size.
    dimensions: list[Annotated[int, Field(ge=1)]] = []
    # Embedding deployments: how token vectors become one vector ("mean", "cls" or "last"); by
    # default as the GGUF declares, and mean for a model that declares none.
    pooling: Literal["mean", "cls", "last"] | None = None
    branches: dict[Branch, BranchConfig]

    @model_validator(mode="after")
    def _check_branches(self) -> DeploymentConfig:
        if "latest" not in self.branches:
            raise ValueError(f"deployment {self.name!r} has no 'latest' branch")
        self._check_kind()
        for branch, config in self.branches.items():
            where = f"deployment {self.name!r}, branch {branch!r}"
            if self.backend == "llamacpp" and (config.model is None or config.replicas):
                raise ValueError(f"{where}: a llamacpp branch needs 'model' and no 'replicas'")
            if self.backend == "upstream" and (
                not config.replicas or config.model is not None or config.mmproj is not None
            ):
                raise ValueError(
                    f"{where}: an upstream branch needs at least one entry in 'replicas' "
                    "and no 'model' or 'mmproj' files"
                )
        return self

    def _check_kind(self) -> None:
        where = f"deployment {self.name!r}"
        if self.kind == "chat" and (self.dimensions or self.pooling):
            raise ValueError(f"{where}: 'dimensions' and 'pooling' are for kind = \"embedding\"")
        if self.kind == "embedding" and self.backend != "llamacpp":
            raise ValueError(f"{where}: embedding deployments are served by the llamacpp backend")
        if self.kind == "embedding" and any(b.mmproj for b in self.branches.values()):
            raise ValueError(f"{where}: an embedding deployment takes no 'mmproj'")

    def accepts_images(self, branch: BranchConfig) -> bool:
        if self.kind == "embedding":
            return False
        if self.backend == "upstream":
            return self.vision
        return branch.mmproj is not None


class CatalogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployments: list[DeploymentConfig] = []

    @model_validator(mode="after")
    def _unique_names(self) -> CatalogConfig:
        names = [d.name for d in self.deployments]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"deployment names repeat: {', '.join(duplicated)}")
        return self


class ConfigurationError(Exception):
    """An operator error found at start-up: reported in words, and the server does not start."""


class CatalogFileError(ConfigurationError):
    """The catalog file is missing or invalid."""


def load_catalog(settings: Settings) -> CatalogConfig:
    """Read the catalog TOML; relative file paths resolve against ``$FOVEA_HOME/models``."""
    path = settings.catalog_path
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        catalog = CatalogConfig.model_validate(raw)
    except FileNotFoundError as exc:
        raise CatalogFileError(f"model catalog not found: {path}") from exc
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise CatalogFileError(f"model catalog {path} is invalid: {exc}") from exc
    for deployment in catalog.deployments:
        for branch in deployment.branches.values():
            if branch.model is not None:
                branch.model = _resolve(settings.models_dir, branch.model)
            if branch.mmproj is not None:
                branch.mmproj = _resolve(settings.models_dir, branch.mmproj)
            for replica in branch.replicas:
                replica._api_key = _replica_key(path, deployment.name, replica)
    return catalog


def _replica_key(path: Path, deployment: str, replica: ReplicaConfig) -> str | None:
    if replica.api_key_env is None:
        return None
    key = os.environ.get(replica.api_key_env)
    if not key:
        raise CatalogFileError(
            f"model catalog {path}: deployment {deployment!r} replica {replica.url} takes its "
            f"API key from the environment variable {replica.api_key_env}, which is not set"
        )
    return key


def _resolve(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path
