"""The anomaly-models aggregate: versioned per-patient baselines (parameters as JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.connection import Connection

__all__ = ["ModelRow", "insert_model", "latest_model_ids", "latest_models", "models_by_id"]

_COLUMNS: Final = (
    "model_id, org_id, patient_id, method, version, feature_version, trained_at, trained_through, "
    "n_observations, params"
)


@dataclass(frozen=True, slots=True)
class ModelRow:
    model_id: int
    org_id: str
    patient_id: str
    method: str
    version: int
    feature_version: int
    trained_at: datetime
    trained_through: datetime
    n_observations: int
    params: dict[str, Any]


def latest_models(conn: Connection, patient_ids: Sequence[str], method: str) -> dict[str, ModelRow]:
    """The newest model of ``method`` for each patient that has one."""
    with conn.cursor(row_factory=class_row(ModelRow)) as cur:
        rows = cur.execute(
            f"SELECT DISTINCT ON (patient_id) {_COLUMNS} FROM anomaly_models "  # noqa: S608 - constant column list
            "WHERE patient_id = ANY(%s) AND method = %s ORDER BY patient_id, version DESC",
            (list(patient_ids), method),
        ).fetchall()
    return {r.patient_id: r for r in rows}


def latest_model_ids(conn: Connection, patient_ids: Sequence[str], method: str) -> dict[str, int]:
    """The ``model_id`` of the newest model of ``method`` for each patient that has one (what
    :func:`latest_models` would return, without the parameters)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (patient_id) patient_id, model_id FROM anomaly_models "
        "WHERE patient_id = ANY(%s) AND method = %s ORDER BY patient_id, version DESC",
        (list(patient_ids), method),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def models_by_id(conn: Connection, model_ids: Sequence[int]) -> list[ModelRow]:
    with conn.cursor(row_factory=class_row(ModelRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM anomaly_models WHERE model_id = ANY(%s)",  # noqa: S608 - constant column list
            (list(model_ids),),
        ).fetchall()


def insert_model(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    method: str,
    feature_version: int,
    trained_at: datetime,
    trained_through: datetime,
    n_observations: int,
    params: dict[str, Any],
) -> int:
    """Store a new version (the previous highest + 1) and return its version number."""
    row = conn.execute(
        "INSERT INTO anomaly_models (org_id, patient_id, method, version, feature_version, trained_at, "
        "trained_through, n_observations, params) "
        "SELECT %s, %s, %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s, %s FROM anomaly_models "
        "WHERE patient_id = %s AND method = %s RETURNING version",
        (
            org_id,
            patient_id,
            method,
            feature_version,
            trained_at,
            trained_through,
            n_observations,
            Jsonb(params),
            patient_id,
            method,
        ),
    ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... SELECT of an aggregate returns one row
        raise RuntimeError("insert returned nothing")
    return int(row[0])
