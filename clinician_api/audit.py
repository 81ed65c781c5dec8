"""Writing the audit trail from requests: one row per call to a PHI route, in the transaction of
the work it records.

:func:`recorded` opens the transaction, lets the route do its reads or writes, then appends the
audit row last (the chain lock is held only for that INSERT and the COMMIT). When the work fails
with a refusal the caller can see (a 409, a 422), the work is rolled back and one ``failed`` row is
written instead. :func:`deny` writes the ``denied`` row of a refused access in its own transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clinician_api.context import RequestInfo
from clinician_api.problems import translate
from rpm_core.clock import Clock
from store import audit as audit_store
from store.audit import AuditEntry, Outcome
from store.connection import Connection

if TYPE_CHECKING:
    from clinician_api.security import Principal

__all__ = ["Recording", "deny", "entry", "recorded", "security_event"]


@dataclass(slots=True)
class Recording:
    """What the route learned while working (ids of created objects, the patients a list showed)."""

    object_id: str | None = None
    patient_id: str | None = None
    subjects: Sequence[str] = field(default_factory=tuple)
    reason: str | None = None


def _clean(text: str | None, limit: int) -> str | None:
    """Text from a request as the audit log can hold it: NUL and other control characters (which
    PostgreSQL text refuses, or a terminal would act on) replaced, cut to ``limit``."""
    if text is None:
        return None
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text[:limit])


def entry(
    who: Principal | None,
    info: RequestInfo,
    clock: Clock,
    *,
    action: str,
    object_type: str,
    outcome: Outcome,
    object_id: str | None = None,
    patient_id: str | None = None,
    subjects: Sequence[str] = (),
    basis: str | None = None,
    reason: str | None = None,
    org_id: str | None = None,
) -> AuditEntry:
    return AuditEntry(
        at=clock.now(),
        org_id=who.org_id if who is not None else org_id,
        actor_id=who.user_id if who is not None else None,
        actor_role=who.role if who is not None else None,
        patient_id=patient_id,
        subjects=tuple(subjects),
        action=action,
        object_type=object_type,
        object_id=_clean(object_id, 200),
        outcome=outcome,
        basis=basis,
        reason=_clean(reason, 1000),
        client_addr=info.client_addr,
        request_id=info.request_id,
    )


@contextmanager
def recorded(
    conn: Connection,
    who: Principal,
    info: RequestInfo,
    clock: Clock,
    *,
    action: str,
    object_type: str,
    object_id: str | None = None,
    patient_id: str | None = None,
    basis: str | None = None,
) -> Iterator[Recording]:
    rec = Recording(object_id=object_id, patient_id=patient_id)
    try:
        with conn.transaction():
            yield rec
            audit_store.append(
                conn,
                entry(
                    who,
                    info,
                    clock,
                    action=action,
                    object_type=object_type,
                    outcome="success",
                    object_id=rec.object_id,
                    patient_id=rec.patient_id,
                    subjects=rec.subjects,
                    basis=basis,
                    reason=rec.reason,
                ),
            )
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None or mapped.status >= 500:
            raise
        with conn.transaction():
            audit_store.append(
                conn,
                entry(
                    who,
                    info,
                    clock,
                    action=action,
                    object_type=object_type,
                    outcome="failed",
                    object_id=rec.object_id,
                    patient_id=rec.patient_id,
                    basis=basis,
                    reason=mapped.code,
                ),
            )
        raise


def deny(
    conn: Connection,
    who: Principal,
    info: RequestInfo,
    clock: Clock,
    *,
    action: str,
    object_type: str,
    object_id: str | None,
    patient_id: str | None = None,
    subjects: Sequence[str] = (),
    reason: str = "not_visible",
) -> None:
    with conn.transaction():
        audit_store.append(
            conn,
            entry(
                who,
                info,
                clock,
                action=action,
                object_type=object_type,
                outcome="denied",
                object_id=object_id,
                patient_id=patient_id,
                subjects=subjects,
                reason=reason,
            ),
        )


def security_event(
    conn: Connection,
    who: Principal | None,
    info: RequestInfo,
    clock: Clock,
    *,
    action: str,
    outcome: Outcome,
    object_id: str | None = None,
    reason: str | None = None,
    org_id: str | None = None,
) -> None:
    """A sign-in, second-factor, session or password event, in the caller's transaction."""
    audit_store.append(
        conn,
        entry(
            who,
            info,
            clock,
            action=action,
            object_type="user",
            outcome=outcome,
            object_id=object_id,
            reason=reason,
            org_id=org_id,
        ),
    )
