"""Settings from the environment (prefix ``RETURNGUARD_``), validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    return f"sqlite:///{Path('returnguard-data') / 'returnguard.sqlite3'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETURNGUARD_", extra="ignore")

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

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # psycopg 3 is the driver we ship; accept the plain form users copy around.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        if not (value.startswith("sqlite") or value.startswith("postgresql+psycopg://")):
            raise ValueError("database_url must be a sqlite:/// or postgresql:// URL")
        return value

    @property
    def run_worker_in_process(self) -> bool:
        if self.in_process_worker is not None:
            return self.in_process_worker
        return self.database_url.startswith("sqlite")
