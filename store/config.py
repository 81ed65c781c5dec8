"""The database defaults every package's settings share: the default URL and the migration flavours."""

from __future__ import annotations

from typing import Literal

__all__ = ["DEFAULT_DATABASE_URL", "Flavor"]

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/vigil"

Flavor = Literal["auto", "postgres", "timescaledb"]
