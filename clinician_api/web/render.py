"""Server-side rendering of the dashboard: the Jinja2 environment (templates shipped in the
package, HTML autoescaped), template helpers (metric names and units, times, sparkline paths) and
the page answer to errors (a redirect to sign-in, or a small HTML page)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from rpm_core.metrics import CATALOGUE

__all__ = ["PAGE_PREFIXES", "TEMPLATES", "Pages", "is_page_path", "page_errors", "sparkline_points"]

# Paths that answer with problem+json; everything else is a page for a person.
_API_PREFIXES: Final = ("/api/", "/fhir/", "/static/", "/healthz", "/readyz")
PAGE_PREFIXES: Final = ("/", "/ui/")
_UNITS: Final = {"Cel": "°C", "mm[Hg]": "mmHg", "/min": "/min", "kg/m2": "kg/m²", "%": "%"}


def is_page_path(path: str) -> bool:
    return not path.startswith(_API_PREFIXES)


def sparkline_points(values: Sequence[float | None], width: int = 120, height: int = 28) -> str:
    """An SVG polyline ``points`` attribute for a sparkline of equal time slots (``None``: a slot
    without readings, skipped); empty for fewer than two values."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(points) < 2:
        return ""
    t0, t1 = points[0][0], points[-1][0]
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    span_t = (t1 - t0) or 1
    span_v = (hi - lo) or 1.0
    return " ".join(
        f"{(t - t0) / span_t * width:.1f},{height - 2 - (v - lo) / span_v * (height - 4):.1f}" for t, v in points
    )


def _metric_name(metric: str) -> str:
    entry = CATALOGUE.get(metric)
    return entry.display.split(" (")[0] if entry else metric


def _unit(unit: str) -> str:
    return _UNITS.get(unit, unit)


def _when(t: datetime | None, now: datetime | None = None) -> str:
    if t is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - t).total_seconds()
    if seconds < 90:
        return "just now"
    for size, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {name}{'s' if n != 1 else ''} ago"
    return "just now"  # pragma: no cover


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.1f}"


TEMPLATES: Final = Path(__file__).resolve().parent.parent / "templates"


class Pages:
    """The templates of one app, all read when it starts (in the app's lifespan, off the event
    loop): rendering then never touches the disk, not even from an async error handler."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.globals.update(
            metric_name=_metric_name,
            unit=_unit,
            when=_when,
            number=_number,
            sparkline=sparkline_points,
        )
        for name in self.env.list_templates(extensions=["html"]):
            self.env.get_template(name)

    def render(self, name: str, context: Mapping[str, Any], *, status: int = 200) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status)

    def error(self, request: Request, status: int, title: str, detail: str, code: str) -> Response | None:
        """The page answer to an error on a page path (see ``problems.PageErrors``)."""
        path = request.url.path
        if not is_page_path(path):
            return None
        if status == 401 or code == "second_factor_required":
            target = "/login?next=" + quote(path + (f"?{request.url.query}" if request.url.query else ""), safe="")
            if request.headers.get("hx-request"):
                return Response(status_code=204, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
        message = "not found" if status == 404 else detail
        return self.render(
            "error.html", {"status": status, "title": title, "detail": message, "code": code, "me": None}, status=status
        )


def page_errors(request: Request, status: int, title: str, detail: str, code: str) -> Response | None:
    """``problems.PageErrors`` over the app's :class:`Pages` (built in its lifespan)."""
    pages: Pages | None = getattr(request.app.state, "pages", None)
    return None if pages is None else pages.error(request, status, title, detail, code)
