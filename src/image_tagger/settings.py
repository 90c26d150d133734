"""The one settings object, read from ``IMAGE_TAGGER_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# Time allowed beyond the analysis time limit for an item's other steps.
BROKER_VISIBILITY_MARGIN_SECONDS = 300.0


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Every setting of the service; units are part of the names."""

    model_config = SettingsConfigDict(env_prefix="IMAGE_TAGGER_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite (WAL) in DATA_DIR",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(
        default=None, description="Base URL printed in sign-in links"
    )

    auth_mode: Literal["token", "header"] = "token"

    queue: Literal["inprocess", "celery", "none"] = "inprocess"
    broker_url: str = "redis://127.0.0.1:6379/0"
    workers: int = Field(default_factory=_default_workers, ge=1)
    lease_seconds: float = Field(default=60.0, gt=0)
    recovery_interval_seconds: float = Field(default=15.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    item_timeout_seconds: float = Field(default=300.0, gt=0)

    # The scaled-out queue (IMAGE_TAGGER_QUEUE=celery).
    celery_queue: str = Field(
        default="image-tagger", min_length=1, description="Celery queue of the items"
    )
    broker_key_prefix: str = Field(
        default="",
        description="Prefix of every Redis key the queue uses, so that several "
        "deployments (or test runs) can share one Redis",
    )

    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_files_per_upload: int = Field(default=500, gt=0)
    max_image_pixels: int = Field(default=100_000_000, gt=0)

    vlm_base_url: str | None = None
    vlm_api_key: SecretStr | None = None
    vlm_model: str | None = None
    vlm_budget_usd: float | None = Field(default=None, ge=0)
    vlm_concurrency: int = Field(default=4, ge=1)
    vlm_rpm: int | None = Field(default=None, ge=1)
    # VLM calls: provider name for prices and the ledger, price overrides,
    # time limits and retries (see the README's VLM section).
    vlm_provider: str | None = Field(
        default=None,
        description="Provider id for prices (openai, openrouter, ...); default: "
        "recognised from the base URL",
    )
    vlm_price_input_per_mtok_usd: float | None = Field(default=None, ge=0)
    vlm_price_output_per_mtok_usd: float | None = Field(default=None, ge=0)
    vlm_timeout_seconds: float = Field(default=60.0, gt=0)
    vlm_max_attempts: int = Field(default=4, ge=1)
    vlm_retry_total_seconds: float = Field(default=180.0, gt=0)
    vlm_backoff_seconds: float = Field(default=1.0, ge=0)
    vlm_max_output_tokens: int = Field(default=1500, ge=16)

    # /metrics answers without credentials unless this is true (then: admin).
    metrics_auth: bool = False

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _both_prices(self) -> Settings:
        given = (self.vlm_price_input_per_mtok_usd, self.vlm_price_output_per_mtok_usd)
        if (given[0] is None) != (given[1] is None):
            raise ValueError(
                "set both IMAGE_TAGGER_VLM_PRICE_INPUT_PER_MTOK_USD and "
                "IMAGE_TAGGER_VLM_PRICE_OUTPUT_PER_MTOK_USD, or neither"
            )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'image_tagger.db'}"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def broker_visibility_timeout_seconds(self) -> float:
        """How long the broker waits for a task's acknowledgement before it
        delivers the task again: longer than the longest item."""
        return self.item_timeout_seconds + BROKER_VISIBILITY_MARGIN_SECONDS

    def unavailable_queue(self) -> str | None:
        """Why the configured queue cannot run here, or None."""
        if self.queue != "celery":
            return None
        try:
            import celery  # noqa: F401
        except ImportError:
            return (
                "IMAGE_TAGGER_QUEUE='celery' needs Celery; install it with: "
                "pip install 'image-tagger[celery]'"
            )
        return None

    @property
    def vlm_configured(self) -> bool:
        """A VLM provider is set up: a model, and a base URL or an API key."""
        return bool(self.vlm_model and (self.vlm_base_url or self.vlm_api_key))

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.images_dir, self.tmp_dir):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()


def describe_invalid_settings(error: ValidationError) -> str:
    """A user-facing account of bad environment variables, one line each."""
    lines = ["invalid settings; fix these environment variables:"]
    for problem in error.errors():
        message = _without_pydantic_prefix(problem["msg"])
        if not problem["loc"]:  # a rule across settings: its message names them
            lines.append(f"  {message}")
            continue
        name = "IMAGE_TAGGER_" + "_".join(str(part) for part in problem["loc"]).upper()
        lines.append(f"  {name}={problem.get('input')!r}: {message}")
    return "\n".join(lines)


def _without_pydantic_prefix(message: str) -> str:
    """Our validators' own words, without pydantic's "Value error, " before them."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def reset_settings() -> None:
    """Forget the cached settings (tests and CLI options change the environment)."""
    get_settings.cache_clear()
