"""Database settings, validated once by the caller's settings and passed in explicitly."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_DATABASE_URL", "DatabaseSettings", "Flavor"]

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/vigil"

Flavor = Literal["auto", "postgres", "timescaledb"]


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = DEFAULT_DATABASE_URL
    pool_min: int = Field(default=1, ge=0, le=100)
    pool_max: int = Field(default=8, ge=1, le=200)
    # Which migration path: "auto" uses TimescaleDB when the extension is available.
    flavor: Flavor = "auto"
    application_name: str = Field(default="vigil", max_length=60)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
