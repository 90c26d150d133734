"""The one settings object, read from ``IMAGE_TAGGER_*`` environment variables."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
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

    # Every number has a finite range (the README's settings table), so a value
    # that would fail later (an infinite lease, a busy sweep) is refused here.
    model_config = SettingsConfigDict(
        env_prefix="IMAGE_TAGGER_", extra="ignore", allow_inf_nan=False
    )

    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite (WAL) in DATA_DIR",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = Field(
        default=None, description="Base URL printed in sign-in links"
    )

    auth_mode: Literal["token", "header"] = "token"

    queue: Literal["inprocess", "celery", "none"] = "inprocess"
    broker_url: str = "redis://127.0.0.1:6379/0"
    workers: int = Field(default_factory=_default_workers, ge=1, le=256)
    lease_seconds: float = Field(default=60.0, ge=1, le=86_400)
    recovery_interval_seconds: float = Field(default=15.0, ge=0.1, le=86_400)
    max_attempts: int = Field(default=3, ge=1, le=100)
    item_timeout_seconds: float = Field(default=300.0, ge=1, le=86_400)

    # The scaled-out queue (IMAGE_TAGGER_QUEUE=celery).
    celery_queue: str = Field(
        default="image-tagger", min_length=1, description="Celery queue of the items"
    )
    broker_key_prefix: str = Field(
        default="",
        description="Prefix of every Redis key the queue uses, so that several "
        "deployments (or test runs) can share one Redis",
    )

    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1, le=2**34)
    max_files_per_upload: int = Field(default=500, ge=1, le=100_000)
    max_image_pixels: int = Field(default=100_000_000, ge=1, le=10**9)

    vlm_base_url: str | None = None
    vlm_api_key: SecretStr | None = None
    vlm_model: str | None = None
    vlm_budget_usd: float | None = Field(default=None, ge=0, le=1_000_000)
    vlm_concurrency: int = Field(default=4, ge=1, le=256)
    vlm_rpm: int | None = Field(default=None, ge=1, le=100_000)
    # VLM calls: provider name for prices and the ledger, price overrides,
    # time limits and retries (see the README's VLM section).
    vlm_provider: str | None = Field(
        default=None,
        description="Provider id for prices (openai, openrouter, ...); default: "
        "recognised from the base URL",
    )
    vlm_price_input_per_mtok_usd: float | None = Field(default=None, ge=0, le=10_000)
    vlm_price_output_per_mtok_usd: float | None = Field(default=None, ge=0, le=10_000)
    vlm_timeout_seconds: float = Field(default=60.0, ge=0.1, le=3600)
    vlm_max_attempts: int = Field(default=4, ge=1, le=20)
    vlm_retry_total_seconds: float = Field(default=180.0, ge=0.1, le=86_400)
    vlm_backoff_seconds: float = Field(default=1.0, ge=0, le=600)
    vlm_max_output_tokens: int = Field(default=1500, ge=16, le=200_000)

    # /metrics answers without credentials unless this is true (then: admin).
    metrics_auth: bool = False

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty; set a folder (./data when the variable is unset)")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("vlm_base_url", "public_url", mode="before")
    @classmethod
    def _http_url(cls, value: object, info: ValidationInfo) -> object:
        if value == "":
            return None  # set but empty: as if unset
        if isinstance(value, str):
            example = _URL_EXAMPLES[info.field_name]
            require_url(value, schemes=("http", "https"), example=example)
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        require_url(value, schemes=None, example=_URL_EXAMPLES["broker_url"])
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value:
            require_database_url(value)
        return value or None

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


_URL_EXAMPLES = {
    "vlm_base_url": "http://127.0.0.1:11434/v1",
    "public_url": "https://tagger.example.org",
    "broker_url": "redis://127.0.0.1:6379/0",
}


def require_url(value: str, *, schemes: tuple[str, ...] | None, example: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a URL with a host (and one of
    ``schemes``, when given); the message shows ``example``."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a port that is not a number, or too big)
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc}); give one like {example}") from None
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not a URL; give one like {example}")
    if schemes and parts.scheme not in schemes:
        raise ValueError(
            f"the URL must start with {' or '.join(s + '://' for s in schemes)}; "
            f"give one like {example}"
        )


def require_database_url(value: str) -> None:
    """Raise ``ValueError`` unless ``value`` is an SQLite or PostgreSQL URL that
    SQLAlchemy parses, with its driver installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    example = "postgresql+psycopg://user:password@host:5432/dbname"
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"not a database URL; give one like {example}") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(
            f"the database kind {url.get_backend_name()!r} is not supported; use "
            f"sqlite:///PATH or a PostgreSQL URL like {example}"
        )
    if url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    ):
        raise ValueError(
            "an SQLite database in memory is gone when the process ends, and "
            "each process would have its own; give a file, like "
            "sqlite:////var/lib/image-tagger/image_tagger.db"
        )
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"unknown database driver {url.drivername!r}; use sqlite:///PATH or a "
            f"PostgreSQL URL like {example}"
        ) from None
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ValueError(
            f"port {url.port} is out of range; give a port from 1 to 65535, like "
            f"{example}"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(
            f"the database driver {exc.name or dialect.driver!r} is not installed; "
            "install it into this environment, or name an installed one in the "
            "URL (postgresql+psycopg://...)"
        ) from None


@lru_cache
def get_settings() -> Settings:
    return Settings()


def describe_invalid_settings(error: ValidationError) -> str:
    """A user-facing account of bad environment variables: one line per
    variable, saying what was given and what to set."""
    lines: list[str] = []
    seen: set[str] = set()
    for problem in error.errors():
        message = _without_pydantic_prefix(problem["msg"])
        if not problem["loc"]:  # a rule across settings: its message names them
            lines.append(f"invalid settings: {message}")
            continue
        field = str(problem["loc"][0])
        if field in seen:  # one line per variable (a union reports each branch)
            continue
        seen.add(field)
        name = f"IMAGE_TAGGER_{field.upper()}"
        given = problem.get("input")
        if isinstance(given, str) and name.endswith("_URL"):
            given = hide_password(given)
        accepted = accepted_range(field)
        if accepted is not None:
            given_was = _NUMBER_PROBLEMS.get(problem["type"], message)
            message = f"{given_was}; set {accepted}"
        lines.append(f"invalid setting {name}={given!r}: {message}")
    return "\n".join(lines)


# What a numeric setting's value was, by pydantic's error type; the accepted
# range follows it.
_NUMBER_PROBLEMS = {
    "finite_number": "not a finite number",
    "float_parsing": "not a number",
    "float_type": "not a number",
    "int_parsing": "not a whole number",
    "int_type": "not a whole number",
    "int_from_float": "not a whole number",
    "greater_than": "out of range",
    "greater_than_equal": "out of range",
    "less_than": "out of range",
    "less_than_equal": "out of range",
}


def accepted_range(field: str) -> str | None:
    """The values a numeric setting takes, in words ("a whole number from 1 to
    65535"), or None for a setting that is not a bounded number."""
    import annotated_types

    info = Settings.model_fields.get(field)
    if info is None:
        return None
    low = high = None
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge | annotated_types.Gt):
            low = rule
        elif isinstance(rule, annotated_types.Le | annotated_types.Lt):
            high = rule
    if low is None or high is None:
        return None
    whole = info.annotation in (int, int | None)
    kind = "a whole number" if whole else "a number"
    if field.endswith("_seconds"):
        kind += " of seconds"
    lower = (
        f"above {_number(low.gt)}"
        if isinstance(low, annotated_types.Gt)
        else f"from {_number(low.ge)}"
    )
    upper = (
        f"below {_number(high.lt)}"
        if isinstance(high, annotated_types.Lt)
        else f"to {_number(high.le)}"
    )
    return f"{kind} {lower} {upper}"


def _number(value: float) -> str:
    """1, 0.1, 86400 and 17179869184 as written, not 1e+06."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _without_pydantic_prefix(message: str) -> str:
    """Our validators' own words, without pydantic's "Value error, " before them."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def hide_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ***."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url, count=1)


def reset_settings() -> None:
    """Forget the cached settings (tests and CLI options change the environment)."""
    get_settings.cache_clear()
