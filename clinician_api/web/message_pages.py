"""The dashboard's secure-messaging pages (my threads with unread counts, one thread), the care
team's follow-up task list, and consult notes (a patient's notes, one note: draft, sign, amend).

Like every page, each calls the API route that serves the same data (the same guard, the same one
audit row) and renders a template; writes go through the JSON API from ``messages.js``, and the
live stream (``/api/v1/threads/stream``) tells the page when to fetch its fragment again.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from clinician_api.access import Resolved, guard
from clinician_api.auth.roles import Permission, allowed
from clinician_api.context import Db, Info, Svc
from clinician_api.routes import messages as message_routes
from clinician_api.routes import notes as note_routes
from clinician_api.security import Principal, require
from clinician_api.web.render import Pages
from store import care_teams, users
from store.connection import Connection

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Messenger = Annotated[Principal, Depends(require(Permission.MESSAGES))]
TaskReader = Annotated[Principal, Depends(require(Permission.TASKS))]
PatientNotes = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.NOTES_READ))]
NotePage = Annotated[Resolved, Depends(guard("note", "note_id", Permission.NOTES_READ))]
ThreadPage = Annotated[Resolved, Depends(guard("thread", "thread_id", Permission.MESSAGES))]


def _pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


def _me(conn: Connection, who: Principal) -> dict[str, object]:
    user = users.get_user(conn, who.user_id)
    return {
        "user_id": who.user_id,
        "name": user.display_name if user else who.user_id,
        "role": who.role,
        "can": {p.value.replace(".", "_"): allowed(who.role, p, who.scopes) for p in Permission},
    }


@router.get("/messages", response_class=HTMLResponse)
def threads_page(request: Request, who: Messenger, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    rows = message_routes.my_threads(who, conn, svc, info, limit=100)
    # Whom a new thread can be about: oneself, or the caller's panel (ids only; the page names nobody).
    about = [who.patient_id] if who.patient_id else care_teams.panel_patient_ids(conn, who.user_id, who.org_id)
    return _pages(request).render(
        "messages.html",
        {"me": _me(conn, who), "page": "messages", "threads": rows, "about": about, "now": svc.clock.now()},
    )


@router.get("/ui/threads/rows", response_class=HTMLResponse)
def thread_rows(request: Request, who: Messenger, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    rows = message_routes.my_threads(who, conn, svc, info, limit=100)
    return _pages(request).render("_thread_rows.html", {"threads": rows, "now": svc.clock.now()})


@router.get("/messages/{thread_id}", response_class=HTMLResponse)
def thread_page(request: Request, target: ThreadPage, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    detail = message_routes.read_thread(target, conn, svc, info, after_seq=0, limit=500)
    return _pages(request).render(
        "thread.html",
        {"me": _me(conn, target.caller), "page": "messages", "t": detail, "now": svc.clock.now()},
    )


@router.get("/ui/threads/{thread_id}/messages", response_class=HTMLResponse)
def thread_messages(request: Request, target: ThreadPage, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    detail = message_routes.read_thread(target, conn, svc, info, after_seq=0, limit=500)
    return _pages(request).render(
        "_thread_messages.html", {"t": detail, "me_id": target.caller.user_id, "now": svc.clock.now()}
    )


@router.get("/tasks", response_class=HTMLResponse)
def tasks_page(request: Request, who: TaskReader, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    rows = note_routes.task_list(who, conn, svc, info, limit=200)
    return _pages(request).render(
        "tasks.html", {"me": _me(conn, who), "page": "tasks", "tasks": rows, "now": svc.clock.now()}
    )


@router.get("/patients/{patient_id}/notes", response_class=HTMLResponse)
def notes_page(request: Request, target: PatientNotes, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    rows = note_routes.patient_notes(target, conn, svc, info)
    who = target.caller
    return _pages(request).render(
        "notes.html",
        {
            "me": _me(conn, who),
            "page": "notes",
            "patient_id": target.object_id,
            "notes": rows,
            "can_write": allowed(who.role, Permission.NOTES_WRITE, who.scopes),
        },
    )


@router.get("/notes/{note_id}", response_class=HTMLResponse)
def note_page(request: Request, target: NotePage, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    note = note_routes.read_note(target, conn, svc, info)
    who = target.caller
    return _pages(request).render(
        "note.html",
        {
            "me": _me(conn, who),
            "page": "notes",
            "n": note,
            "can_write": allowed(who.role, Permission.NOTES_WRITE, who.scopes),
        },
    )
