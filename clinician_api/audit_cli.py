"""``vigil audit``: check the audit chain (``verify``) and export a patient's accounting of
disclosures (``export``).

``verify`` streams the whole chain in one snapshot, recomputes every link's hash from its audit
row's fields, checks each link follows the one before, that no position is missing and no sealed
row is gone, and prints where the chain breaks (exit 1) or its head, to record elsewhere as an
anchor (``--anchor SEQ:HASH`` checks a head recorded earlier still holds). Rows written since the
last seal are counted, not checked. ``seal`` chains them now (the API does it every second).
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from clinician_api.settings import ApiSettings
from rpm_core.errors import VigilError
from rpm_core.settings import load_settings
from store import audit as audit_store
from store.audit import AuditRow
from store.connection import connect

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Verify and export the audit log.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]
UrlOpt = Annotated[str | None, typer.Option("--database-url", help="PostgreSQL URL (or VIGIL_DATABASE_URL).")]
_FIELDS = (
    "audit_id", "at", "org_id", "actor_id", "actor_role", "patient_id", "via", "action", "object_type", "object_id",
    "outcome", "basis", "reason", "client_addr", "request_id",
)  # fmt: skip


def _url(config: Path | None, database_url: str | None) -> str:
    try:
        return load_settings(ApiSettings, config_file=config, database_url=database_url).database_url
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _anchor(text: str | None) -> tuple[int, bytes] | None:
    if text is None:
        return None
    try:
        seq, digest = text.split(":", 1)
        value = (int(seq), bytes.fromhex(digest))
    except ValueError as exc:
        raise typer.BadParameter("expected SEQ:HEX, as printed by verify") from exc
    if len(value[1]) != 32:
        raise typer.BadParameter("the hash has 64 hex digits")
    return value


@app.command("verify")
def verify(
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
    anchor: Annotated[str | None, typer.Option(help="SEQ:HASH recorded earlier (from a previous verify).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the hash chain; exit 1 and name the rows when it is broken."""
    url = _url(config, database_url)
    anchored = _anchor(anchor)
    with connect(url, application_name="vigil-audit") as conn:
        report = audit_store.verify_chain(audit_store.iter_chain(conn), anchor=anchored)
        pending = audit_store.unsealed(conn)
    head = f"{report.head_seq}:{report.head_hash.hex()}" if report.head_hash is not None else None
    if as_json:
        doc = {"ok": report.ok, "rows": report.rows, "first_seq": report.first_seq, "head": head,
               "unsealed": pending,
               "breaks": [{"seq": b.seq, "kind": b.kind, "detail": b.detail} for b in report.breaks]}  # fmt: skip
        typer.echo(json.dumps(doc))
    else:
        for b in report.breaks:
            typer.echo(f"BROKEN at row {b.seq}: {b.kind}: {b.detail}")
        state = "intact" if report.ok else f"BROKEN ({len(report.breaks)} problem(s))"
        typer.echo(f"audit chain {state}: {report.rows} rows, head {head or '(empty)'}, {pending} not sealed yet")
    if not report.ok:
        raise typer.Exit(1)


@app.command("seal")
def seal(config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    """Chain every finished audit row now."""
    url = _url(config, database_url)
    total = 0
    with connect(url, application_name="vigil-audit") as conn:
        while n := audit_store.seal(conn):
            total += n
    typer.echo(f"sealed {total} audit rows")


def _when(text: str, *, end: bool) -> datetime:
    """An ISO date (the whole day, UTC) or an ISO time with zone."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO date or time") from exc
    if value.tzinfo is None:
        raise typer.BadParameter("a time needs its zone (e.g. 2026-03-01T08:00:00Z)")
    return value


def _record(r: AuditRow, patient: str) -> dict[str, Any]:
    return {
        "audit_id": r.audit_id, "at": r.at.isoformat(), "org_id": r.org_id, "actor_id": r.actor_id,
        "actor_role": r.actor_role, "patient_id": r.patient_id,
        "via": "subject" if r.patient_id == patient else "listed", "action": r.action,
        "object_type": r.object_type, "object_id": r.object_id, "outcome": r.outcome, "basis": r.basis,
        "reason": r.reason, "client_addr": r.client_addr, "request_id": r.request_id,
    }  # fmt: skip


def _write(rows: Any, patient: str, fmt: str, out: TextIO) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow(_record(r, patient))
            n += 1
        return n
    out.write("[")
    for r in rows:
        out.write(("," if n else "") + "\n" + json.dumps(_record(r, patient)))
        n += 1
    out.write("\n]\n")
    return n


@app.command("export")
def export(
    patient: Annotated[str, typer.Option("--patient", help="Patient id.")],
    start: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD, UTC) or ISO time.")],
    end: Annotated[str, typer.Option("--to", help="Last day (inclusive) or ISO time (exclusive).")],
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: standard output).")] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Every access to one patient's data in a period: an accounting of disclosures."""
    if fmt not in ("csv", "json"):
        raise typer.BadParameter("--format is csv or json")
    t0, t1 = _when(start, end=False), _when(end, end=True)
    url = _url(config, database_url)
    with connect(url, application_name="vigil-audit") as conn:
        rows = audit_store.iter_patient(conn, patient, t0, t1)
        if out is None:
            n = _write(rows, patient, fmt, sys.stdout)
        else:
            with out.open("w", encoding="utf-8", newline="") as f:
                n = _write(rows, patient, fmt, f)
    typer.echo(f"{n} audit rows for patient {patient}", err=True)
