"""Settings of the alert engine (``vigil alerts``): environment ``VIGIL_*`` over the TOML file.

Built once by the CLI and passed down. ``alerts_rules`` (TOML table ``[alerts_rules]``) holds the
organisation defaults of every rule (alerts.config.RulesConfig).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from alerts.config import RulesConfig
from rpm_core.settings import VigilSettings
from store.channels import READINGS_CHANNEL
from store.config import DEFAULT_DATABASE_URL

__all__ = ["AlertsSettings"]


class AlertsSettings(VigilSettings):
    # PostgreSQL URL of the Vigil database: the engine reads the readings feed and writes alerts there.
    database_url: str = DEFAULT_DATABASE_URL
    # Patient partitions shared out between engine workers (keep it the same on every worker).
    alerts_partitions: Annotated[int, Field(ge=1, le=4096)] = 16
    # Most feed readings per page; each page is evaluated and its watermarks saved in one transaction.
    alerts_batch_limit: Annotated[int, Field(ge=1, le=100_000)] = 2000
    # LISTEN wakes the engine at once; this poll is the fallback if a notification is lost.
    alerts_poll_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # Seconds between scheduled rounds: missing data, devices and agents, auto-resolution and anomaly
    # model retraining.
    alerts_schedule_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    # Seconds between partition rebalances: how soon workers share with a new worker or take over the
    # partitions of one that stopped.
    alerts_rebalance_interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    # Readings older than this when they arrive (a meter uploading weeks of memory) are stored
    # history for the rules but do not trigger an evaluation themselves.
    alerts_stale_after_h: Annotated[float, Field(gt=0)] = 24.0
    # Most patients whose anomaly model is due (missing or older than retrain_h) a worker trains per
    # scheduled round; the rest wait for the next round. 0: the engine trains no models.
    alerts_retrain_per_tick: Annotated[int, Field(ge=0, le=10_000)] = 200
    # PostgreSQL channel the engine LISTENs on. Ingest always NOTIFYs vigil_readings after each commit:
    # another name leaves the engine on alerts_poll_interval_s alone.
    alerts_channel: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = READINGS_CHANNEL
    # Organisation defaults of every alert rule (TOML table [alerts_rules], alerts.config.RulesConfig;
    # docs/alerts.md); a patient's settings can override them.
    alerts_rules: RulesConfig = RulesConfig()
