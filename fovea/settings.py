"""Configuration: the only module that reads the environment and configuration files.

``Settings`` comes from ``FOVEA_*`` environment variables (or keyword arguments in tests);
``load_catalog`` reads the TOML model catalog it names.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BRANCHES = ("latest", "rc", "deprecated")
Branch = Literal["latest", "rc", "deprecated"]

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
    database_url: str | None = None
    log_level: str = "info"

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
    # Batch lines in flight at once (queued in the engine behind interactive requests).
    batch_concurrency: int = 2
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

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

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


class BranchFiles(BaseModel):
    """The files one branch of a deployment serves."""

    model_config = ConfigDict(extra="forbid")

    model: Path
    mmproj: Path | None = None


class DeploymentConfig(BaseModel):
    """One entry of the model catalog."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    backend: Literal["llamacpp"] = "llamacpp"
    description: str = ""
    owned_by: str = "fovea"
    context_length: int = Field(default=4096, ge=64)
    max_images: int = Field(default=8, ge=0)
    max_output_tokens: int = Field(default=2048, ge=1)
    default_max_tokens: int = Field(default=512, ge=1)
    chat_template: str | None = None
    n_threads: int | None = None
    n_gpu_layers: int = 0
    flash_attn: bool = True
    preload: bool = True
    # Vision-encoder outputs kept per loaded model, so a repeated image skips the encoder.
    image_cache_mb: int = Field(default=256, ge=0)
    # Reuse the KV cache for a prompt's prefix shared with the previous request.
    prefix_cache: bool = True
    branches: dict[Branch, BranchFiles]

    @model_validator(mode="after")
    def _needs_latest(self) -> DeploymentConfig:
        if "latest" not in self.branches:
            raise ValueError(f"deployment {self.name!r} has no 'latest' branch")
        return self


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


class CatalogFileError(Exception):
    """The catalog file is missing or invalid (an operator error, reported at start-up)."""


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
        for files in deployment.branches.values():
            files.model = _resolve(settings.models_dir, files.model)
            if files.mmproj is not None:
                files.mmproj = _resolve(settings.models_dir, files.mmproj)
    return catalog


def _resolve(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path
