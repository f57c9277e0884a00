"""Settings from the environment (prefix ``RETURNGUARD_``), validated at start-up."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated

from limits import parse
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from returnguard.kit.egress import parse_networks
from returnguard.kit.secrets import parse_keys


def default_database_url() -> str:
    return f"sqlite:///{Path('returnguard-data') / 'returnguard.sqlite3'}"


class Settings(BaseSettings):
    # Inputs stay out of validation errors: a mistyped key must not be printed with them.
    model_config = SettingsConfigDict(
        env_prefix="RETURNGUARD_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL: sqlite:///path (default) or postgresql+psycopg://...",
    )
    # The embedded default runs the outbox worker inside the API process; with
    # PostgreSQL, operators usually run `returnguard worker` processes instead.
    in_process_worker: bool | None = None
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    outbox_lease_seconds: int = Field(default=60, ge=5)
    storage_dir: str = Field(
        default="returnguard-data/files",
        description="Where uploaded evidence (photos, videos, documents) is kept",
    )
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # Evidence storage (kit/storage.py; docs/operations.md, "Evidence storage").
    storage_backend: str = Field(
        default="local",
        pattern=r"^(local|s3)$",
        description="local: files under storage_dir; s3: an S3 bucket",
    )
    s3_bucket: str | None = Field(default=None, description="The bucket (storage_backend s3)")
    s3_prefix: str = Field(default="evidence/", max_length=200, pattern=r"^([\w.-]+/)*$")
    s3_endpoint_url: str | None = Field(
        default=None, description="For S3-compatible servers (MinIO, Ceph...); unset: AWS"
    )
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    evidence_orphan_grace_seconds: int = Field(
        default=3600,
        ge=60,
        description="Stored files no evidence row names are removed once this old (sweep)",
    )
    # Limits enforced while the body arrives (kit/guard.py), before any of it is kept.
    max_json_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest JSON request body, in bytes (413 above it)",
    )
    max_multipart_body_bytes: int = Field(
        default=110 * 1024 * 1024,
        ge=1024,
        description="Largest multipart (evidence upload) or other non-JSON request body, "
        "in bytes, all files together (413 above it)",
    )
    auth_failure_rate_limit: str = Field(
        default="20/minute",
        description="Failed authentications a client address may make (limits notation, "
        "e.g. 20/minute); beyond it every request from it is a 429 with Retry-After",
    )
    # Signs the event log's checkpoints (HMAC-SHA256). Never stored in the database: kept
    # by whoever runs the service, it is what makes the log evidence against someone who
    # can write to the database. Unset (dev, demo): checkpoints are written unsigned.
    audit_key: SecretStr | None = Field(
        default=None,
        description="Key that signs event checkpoints: at least 32 random characters "
        "(`returnguard events keygen`); unset, checkpoints are unsigned",
    )
    # Encrypts webhook signing secrets and provider credentials at rest (kit/secrets.py;
    # docs/operations.md, "Secrets at rest"). Unset: SQLite keeps a generated key file
    # beside the database; PostgreSQL refuses to store a new secret.
    secret_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated keys (32 random bytes, base64url: `returnguard secrets "
        "keygen`) that encrypt stored secrets: the first encrypts, all decrypt",
    )
    # Networks outbound calls (webhooks, refund providers) may reach besides the public
    # internet: none in production; loopback for local development and the tests.
    outbound_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks (CIDR) that webhook and provider URLs may "
        "point at besides public addresses, e.g. 127.0.0.0/8,::1",
    )
    # Every outbox worker (`returnguard worker`, or the API's own thread on SQLite) seals
    # new chain heads this often; 0 leaves it to `returnguard events checkpoint` (cron).
    checkpoint_interval_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="How often workers seal the event log's new chain heads (0: never)",
    )
    # Every outbox worker also rebuilds the net-profit rollups of months that changed
    # (docs/ledger.md, "Rollups"); 0 leaves it to `returnguard report rollup` (cron).
    rollup_interval_seconds: int = Field(
        default=60,
        ge=0,
        le=86_400,
        description="How often workers rebuild net-profit rollups of changed months (0: never)",
    )

    @field_validator("outbound_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            try:
                parse_networks(str(v) for v in value)
            except ValueError as exc:
                raise ValueError(f"outbound_allowed_networks: {exc}") from None
        return value

    @field_validator("auth_failure_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"auth_failure_rate_limit: {exc}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # psycopg 3 is the driver we ship; accept the plain form users copy around.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        if not (value.startswith("sqlite") or value.startswith("postgresql+psycopg://")):
            raise ValueError("database_url must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("audit_key")
    @classmethod
    def _strong_audit_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < 32:
            raise ValueError(
                "audit_key must be at least 32 characters (`returnguard events keygen` makes one)"
            )
        return SecretStr(value.get_secret_value().strip())

    @field_validator("secret_keys")
    @classmethod
    def _strong_secret_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            keys = parse_keys(value.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"secret_keys: {exc}") from None
        return SecretStr(",".join(base64.urlsafe_b64encode(k).rstrip(b"=").decode() for k in keys))

    @property
    def secret_key_list(self) -> list[bytes]:
        """The keys of stored secrets, the sealing one first (empty when unset)."""
        return parse_keys(self.secret_keys.get_secret_value()) if self.secret_keys else []

    @property
    def audit_key_bytes(self) -> bytes | None:
        """The checkpoint signing key, or None when the log runs unsigned."""
        return self.audit_key.get_secret_value().encode() if self.audit_key else None

    @property
    def run_worker_in_process(self) -> bool:
        if self.in_process_worker is not None:
            return self.in_process_worker
        return self.database_url.startswith("sqlite")
