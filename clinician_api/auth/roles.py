"""Roles, permissions and bearer-token scopes: the roles matrix in one table.

Seeing a patient's data needs two things: a permission for the kind of request (this table) and
the patient in the caller's panel (:mod:`clinician_api.access`). Admins manage accounts and care
teams; they see clinical data only for the patients of teams they belong to, like everyone else.
A bearer token carries scopes; its effective permissions are its scopes within its user's role.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import Final

__all__ = ["GRANTS", "MFA_ROLES", "STAFF_ROLES", "TOKEN_SCOPES", "Permission", "Role", "allowed"]


class Role(enum.StrEnum):
    ADMIN = "admin"
    CLINICIAN = "clinician"
    NURSE = "nurse"
    CARE_COORDINATOR = "care_coordinator"
    PATIENT = "patient"
    SERVICE = "service"


class Permission(enum.StrEnum):
    PANEL_READ = "panel.read"  # the panel, a patient's page and charts
    ALERTS_READ = "alerts.read"  # the alert queue, an alert, the live stream
    ALERTS_ACT = "alerts.act"  # acknowledge, snooze, resolve
    ALERTS_ASSIGN = "alerts.assign"
    BREAK_GLASS = "break_glass"  # open a patient outside one's panel, with a reason
    ADMIN = "admin"  # users, care teams, tokens, the roster, break-glass review, policies, fleet
    PATIENTS_ENROL = "patients.enrol"  # enrol a patient; demographics, conditions, consent, set-up
    SETTINGS_WRITE = "settings.write"  # a patient's alert thresholds and rule settings
    TIME_READ = "time.read"  # time entries of a patient
    TIME_WRITE = "time.write"  # the timer and manual time entries
    BILLING_READ = "billing.read"  # the organisation's CMS billing evidence
    MESSAGES = "messages"  # secure messaging: threads one takes part in (and break-glass reading)
    NOTES_READ = "notes.read"  # consult notes of a patient
    NOTES_WRITE = "notes.write"  # write, sign and amend consult notes; create follow-up tasks
    TASKS = "tasks"  # the care team's follow-up task list; close tasks


P = Permission
GRANTS: Final = MappingProxyType(
    {
        Role.ADMIN: frozenset(
            {
                P.PANEL_READ,
                P.ALERTS_READ,
                P.ADMIN,
                P.PATIENTS_ENROL,
                P.TIME_READ,
                P.BILLING_READ,
                P.MESSAGES,
                P.NOTES_READ,
            }
        ),
        Role.CLINICIAN: frozenset(
            {
                P.PANEL_READ,
                P.ALERTS_READ,
                P.ALERTS_ACT,
                P.ALERTS_ASSIGN,
                P.BREAK_GLASS,
                P.PATIENTS_ENROL,
                P.SETTINGS_WRITE,
                P.TIME_READ,
                P.TIME_WRITE,
                P.MESSAGES,
                P.NOTES_READ,
                P.NOTES_WRITE,
                P.TASKS,
            }
        ),
        Role.NURSE: frozenset(
            {
                P.PANEL_READ,
                P.ALERTS_READ,
                P.ALERTS_ACT,
                P.ALERTS_ASSIGN,
                P.BREAK_GLASS,
                P.PATIENTS_ENROL,
                P.SETTINGS_WRITE,
                P.TIME_READ,
                P.TIME_WRITE,
                P.MESSAGES,
                P.NOTES_READ,
                P.NOTES_WRITE,
                P.TASKS,
            }
        ),
        Role.CARE_COORDINATOR: frozenset(
            {
                P.PANEL_READ,
                P.ALERTS_READ,
                P.ALERTS_ASSIGN,
                P.PATIENTS_ENROL,
                P.TIME_READ,
                P.TIME_WRITE,
                P.MESSAGES,
                P.NOTES_READ,
                P.TASKS,
            }
        ),
        Role.PATIENT: frozenset({P.PANEL_READ, P.MESSAGES}),
        Role.SERVICE: frozenset({P.PANEL_READ, P.ALERTS_READ, P.ALERTS_ACT, P.ALERTS_ASSIGN}),
    }
)
# What an integration's token may be granted.
TOKEN_SCOPES: Final = frozenset({P.PANEL_READ, P.ALERTS_READ, P.ALERTS_ACT, P.ALERTS_ASSIGN})
STAFF_ROLES: Final = frozenset({Role.ADMIN, Role.CLINICIAN, Role.NURSE, Role.CARE_COORDINATOR})
# Roles that must pass a second factor (HIPAA 164.312(d)); a patient who enrolled TOTP must too.
MFA_ROLES: Final = STAFF_ROLES


def allowed(role: str, permission: Permission, scopes: frozenset[str] | None = None) -> bool:
    """Whether ``role`` (limited to ``scopes`` for a token) holds ``permission``."""
    try:
        granted = GRANTS[Role(role)]
    except ValueError:
        return False
    return permission in granted and (scopes is None or permission.value in scopes)
