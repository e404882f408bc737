"""Settings: one pydantic-settings class, read from the environment (and an optional .env file)."""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./mineral_labs.db"


class Settings(BaseSettings):
    """Service settings. Every field can be set as ``MINERAL_<NAME>``; the database also as
    ``DATABASE_URL``."""

    model_config = SettingsConfigDict(
        env_prefix="MINERAL_", env_file=".env", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "MINERAL_DATABASE_URL", "database_url"),
        description="SQLAlchemy URL: sqlite:///file.db or postgresql://user@host/db",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_max_overflow: int = Field(default=10, ge=0, le=200)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="request body limit")
    max_results_per_panel: int = Field(default=200, ge=1, le=10_000)
    page_size_default: int = Field(default=50, ge=1, le=1000)
    page_size_max: int = Field(default=200, ge=1, le=10_000)
    default_organization: str = "default"

    # Access control: OIDC bearer tokens for clinician front-ends (API keys need no settings).
    oidc_jwks_file: str | None = Field(default=None, description="path to a JWKS JSON file")
    oidc_jwks_url: str | None = Field(default=None, description="JWKS URL (fetched, cached)")
    oidc_jwks_cache_seconds: int = Field(default=300, ge=0)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_organization_claim: str = "org"
    oidc_role_claim: str = "role"
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    oidc_leeway_seconds: int = Field(default=30, ge=0, le=300)
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="how long a verified API key is trusted without a database read; a "
        "revocation reaches other processes within this time (0 = always read)",
    )
    api_key_touch_interval_seconds: int = Field(
        default=60, ge=0, description="how often an API key's last-used time is written"
    )
    # Safe retries.
    idempotency_retention_hours: int = Field(default=24, ge=1, le=24 * 30)
    idempotency_wait_seconds: float = Field(
        default=10.0, gt=0, le=60, description="how long a retry waits for the first attempt"
    )
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("DATABASE_URL must be a sqlite:// or postgresql:// URL")
        return value

    @property
    def async_database_url(self) -> str:
        """The URL with the async driver this service uses (asyncpg / aiosqlite)."""
        return to_async_url(self.database_url)


def to_async_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+", 1)[0]
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg{sep}{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite{sep}{rest}"
    return url


@cache
def get_settings() -> Settings:
    return Settings()
