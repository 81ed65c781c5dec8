"""Searchset Bundles and cursor pages of Observations.

The route runs the query (its order must keep one measurement's readings adjacent, see
:mod:`clinician_api.fhir.grouping`) and passes the rows as an iterator; :func:`page_observations`
takes Observations until it has ``count`` and returns the key of the first reading it did not
use, from which the route builds its opaque next cursor (resume with ``>=`` that key in the same
order). :func:`searchset` wraps the page with ``self`` and ``next`` links built from the cursors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from clinician_api.fhir.errors import InvalidRecord
from clinician_api.fhir.grouping import group_readings
from clinician_api.fhir.ids import ReadingKey
from clinician_api.fhir.records import ReadingRecord
from clinician_api.fhir.resources import DEFAULT_NAMING, FhirNaming, Resource, fhir_instant, observation

__all__ = ["CURSOR_PARAM", "ObservationPage", "page_observations", "search_url", "searchset"]

CURSOR_PARAM = "_cursor"


@dataclass(frozen=True, slots=True)
class ObservationPage:
    resources: list[Resource]
    next_key: ReadingKey | None


def page_observations(
    readings: Iterable[ReadingRecord],
    count: int,
    *,
    naming: FhirNaming = DEFAULT_NAMING,
    device_profiles: Mapping[str, str] | None = None,
) -> ObservationPage:
    """Up to ``count`` Observations from ``readings`` and the key where the next page starts."""
    if count < 1:
        raise InvalidRecord("page", "count", "must be at least 1")
    resources: list[Resource] = []
    for group in group_readings(readings):
        if len(resources) == count:
            first = group[0]
            return ObservationPage(resources, ReadingKey(first.agent_id, first.seq, first.measured_at))
        resources.append(observation(group, naming=naming, device_profiles=device_profiles))
    return ObservationPage(resources, None)


def search_url(base_url: str, resource_type: str, params: Sequence[tuple[str, str]], cursor: str | None = None) -> str:
    """``{base}/{type}?{params}`` with ``_cursor`` replaced by ``cursor`` (or removed)."""
    kept = [(k, v) for k, v in params if k != CURSOR_PARAM]
    if cursor is not None:
        kept.append((CURSOR_PARAM, cursor))
    query = urlencode(kept)
    return f"{base_url.rstrip('/')}/{resource_type}" + (f"?{query}" if query else "")


def searchset(
    resources: Iterable[Resource],
    *,
    base_url: str,
    resource_type: str,
    params: Sequence[tuple[str, str]] = (),
    cursor: str | None = None,
    next_cursor: str | None = None,
    total: int | None = None,
    timestamp: datetime | None = None,
) -> Resource:
    """A ``searchset`` Bundle: entries with ``fullUrl`` and ``search.mode`` ``match``.

    ``total`` only when the route counted (counting a large search is a query of its own).
    """
    base = base_url.rstrip("/")
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in resources
    ]
    links = [{"relation": "self", "url": search_url(base, resource_type, params, cursor)}]
    if next_cursor is not None:
        links.append({"relation": "next", "url": search_url(base, resource_type, params, next_cursor)})
    bundle: Resource = {"resourceType": "Bundle", "type": "searchset"}
    if timestamp is not None:
        bundle["timestamp"] = fhir_instant(timestamp)
    if total is not None:
        if total < len(entries):
            raise InvalidRecord("Bundle", "total", "smaller than the entries on this page")
        bundle["total"] = total
    bundle["link"] = links
    bundle["entry"] = entries
    return bundle
