"""Settings: one pydantic-settings class, read from the environment (and an optional .env file)."""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./mineral_labs.db"
# Only for MINERAL_ENVIRONMENT=development (the embedded SQLite default): anyone can read it here.
DEVELOPMENT_AUDIT_KEY = "development-only audit key: set MINERAL_AUDIT_KEY in production"
MIN_AUDIT_KEY_LENGTH = 32


def audit_key_weakness(key: SecretStr) -> str | None:
    """Why a key is too weak to protect the audit chain, or None."""
    value = key.get_secret_value()
    if value == DEVELOPMENT_AUDIT_KEY:
        return "is the development default"
    if len(value) < MIN_AUDIT_KEY_LENGTH:
        return f"is shorter than {MIN_AUDIT_KEY_LENGTH} characters"
    if len(set(value)) < 8:
        return "repeats too few distinct characters"
    return None


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
    # PostgreSQL with separated roles: migrations (and `setup-roles`) run as the schema's owner,
    # the service as a role that may only INSERT and SELECT audit rows. Unset: DATABASE_URL.
    migration_database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "MIGRATION_DATABASE_URL",
            "DATABASE_OWNER_URL",
            "MINERAL_MIGRATION_DATABASE_URL",
            "migration_database_url",
        ),
        description="URL of the schema owner's role, for migrations and grants",
    )
    # The audit chain's HMAC key: never stored in the database. The default is for local
    # development only and is refused in any other environment.
    audit_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_AUDIT_KEY),
        validation_alias=AliasChoices("MINERAL_AUDIT_KEY", "audit_key"),
        description="secret key of the audit trail's HMAC chain (at least 32 characters)",
    )
    audit_chains: int = Field(
        default=64,
        ge=1,
        le=64,
        description="PostgreSQL: how many audit chains processes spread their appends over "
        "(each process appends to 8 of them at once; 1: one chain, one lock for every "
        "appender of every process, one append in flight: a worker's writes queue behind it; "
        "see bench/README.md, Scaling out)",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_max_overflow: int = Field(default=10, ge=0, le=200)
    database_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="PostgreSQL: how long opening a connection or waiting for a pooled one may "
        "take before the request answers 503 (a statement may run this long beyond the "
        "idempotency wait)",
    )
    database_ping_idle_seconds: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="PostgreSQL: a pooled connection idle this long is pinged before use "
        "(0 = ping on every checkout); see bench/README.md, Scaling out",
    )
    database_statement_cache_size: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="PostgreSQL: prepared statements cached per connection (asyncpg and "
        "SQLAlchemy); 0 behind a pooler in transaction mode such as PgBouncer",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="request body limit")
    # Hostile-input bounds, checked on the raw JSON text before it is parsed (README "Limits").
    max_json_depth: int = Field(default=64, ge=8, le=512, description="JSON nesting limit")
    max_json_number_digits: int = Field(
        default=15,
        ge=1,
        le=100,
        description="digits in a JSON number (15: every such number is read exactly)",
    )
    max_json_number_exponent: int = Field(
        default=30, ge=0, le=300, description="largest exponent a JSON number may carry"
    )
    hl7_max_segments: int = Field(
        default=5000, ge=10, le=1_000_000, description="segments in one HL7 body over HTTP"
    )
    max_results_per_panel: int = Field(default=200, ge=1, le=10_000)
    page_size_default: int = Field(default=50, ge=1, le=1000)
    page_size_max: int = Field(default=200, ge=1, le=10_000)
    default_organization: str = "default"
    # Shown at the top of the patient's printable plan (e.g. "Riverside Clinic",
    # "Phone 555 0100, Mon-Fri 8-17"); omitted from the page when unset.
    clinic_name: str | None = None
    clinic_contact: str | None = None

    # Access control: OIDC bearer tokens for clinician front-ends (API keys need no settings).
    oidc_jwks_file: str | None = Field(default=None, description="path to a JWKS JSON file")
    oidc_jwks_url: str | None = Field(default=None, description="JWKS URL (fetched, cached)")
    oidc_jwks_cache_seconds: int = Field(default=300, ge=0)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_organization_claim: str = "org"
    oidc_role_claim: str = "role"
    # The claim holding the user's name as plans show it (author, approver); default `name`.
    oidc_display_name_claim: str = "name"
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
    refused_input_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="how long refused inputs (PHI) are kept for re-processing; older ones are "
        "deleted on the next refusal and by `purge-refused`",
    )
    idempotency_wait_seconds: float = Field(
        default=10.0, gt=0, le=60, description="how long a retry waits for the first attempt"
    )
    cors_origins: list[str] = Field(default_factory=list)

    # Operations: /metrics, graceful shutdown, the MLLP listener (see README "Operations").
    metrics_enabled: bool = Field(default=True, description="serve Prometheus metrics")
    metrics_allowed_networks: list[str] = Field(
        default_factory=list,
        description="JSON list of client networks (CIDR) that may read /metrics; empty = any",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="on SIGTERM, how long in-flight requests (and MLLP frames) may take to finish",
    )
    mllp_max_connections: int = Field(default=64, ge=1, le=10_000)
    mllp_idle_timeout_seconds: float = Field(
        default=120.0, gt=0, description="close an MLLP connection with no complete frame this long"
    )
    mllp_frame_timeout_seconds: float = Field(
        default=30.0, gt=0, description="a frame must arrive whole this long after its start byte"
    )
    mllp_max_message_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # Which identifiers may name a patient in HL7 / FHIR / JSON input (identifier types,
    # excluded types, placeholder values); default app/data/patient_matching.yaml.
    patient_matching_file: str | None = Field(
        default=None, description="path to a patient-matching YAML file"
    )
    # Aliases mapping identifier namespaces and panel sources to absolute URIs; default
    # app/data/identifier_systems.yaml.
    identifier_systems_file: str | None = Field(
        default=None, description="path to an identifier-systems YAML file"
    )

    @model_validator(mode="after")
    def _strong_audit_key(self) -> Settings:
        if self.environment != "development" and audit_key_weakness(self.audit_key) is not None:
            raise ValueError(
                f"MINERAL_AUDIT_KEY {audit_key_weakness(self.audit_key)}: outside development set "
                "a random secret of at least 32 characters (e.g. `openssl rand -base64 48`)"
            )
        return self

    @property
    def owner_database_url(self) -> str:
        """The URL migrations and grants run with: the owner's, else DATABASE_URL."""
        return self.migration_database_url or self.database_url

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
