"""Searchset pages (cursor continuation never splits a panel) and the streamed NDJSON export."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from clinician_api.fhir import (
    DeviceRecord,
    InvalidRecord,
    PatientRecord,
    ReadingKey,
    ReadingRecord,
    everything_ndjson,
    page_observations,
    searchset,
)

from .conformance import validate

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BASE = "https://vigil.example/fhir/r4"


def day_of_readings(n_bp: int) -> list[ReadingRecord]:
    """Per minute: a cuff measurement (3 readings) and then an SpO2 reading, consecutive seqs."""
    out: list[ReadingRecord] = []
    seq = 1
    for i in range(n_bp):
        at = T0 + timedelta(minutes=i)
        for metric, value in (("bp_systolic", 120.0), ("bp_diastolic", 80.0), ("bp_mean", 93.0)):
            out.append(ReadingRecord("pat-1", "org1", "agt-1", "cuff", seq, metric, value, "mm[Hg]", at))
            seq += 1
        out.append(ReadingRecord("pat-1", "org1", "agt-1", "ox", seq, "spo2", 97.0, "%", at))
        seq += 1
    return out


def key_of(r: ReadingRecord) -> tuple[datetime, str, int]:
    return (r.measured_at, r.agent_id, r.seq)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
def test_cursor_pages_cover_every_observation_once_and_never_split_a_panel(count: int) -> None:
    rows = day_of_readings(6)  # 12 Observations
    seen: list[str] = []
    after: ReadingKey | None = None
    for _ in range(100):
        remaining = [r for r in rows if after is None or key_of(r) >= (after.measured_at, after.agent_id, after.seq)]
        page = page_observations(iter(remaining), count)
        assert 1 <= len(page.resources) <= count
        for obs in page.resources:
            validate(obs)
            if obs["id"].startswith("bp."):
                assert len(obs["component"]) == 3
        seen.extend(o["id"] for o in page.resources)
        if page.next_key is None:
            break
        after = page.next_key
    assert len(seen) == len(set(seen)) == 12


def test_page_count_must_be_positive() -> None:
    with pytest.raises(InvalidRecord):
        page_observations([], 0)


def test_searchset_bundle_links_and_entries() -> None:
    page = page_observations(iter(day_of_readings(2)), 3)
    bundle = searchset(
        page.resources,
        base_url=BASE + "/",
        resource_type="Observation",
        params=[("patient", "pat-1"), ("code", "http://loinc.org|85354-9"), ("_cursor", "stale")],
        cursor="c1",
        next_cursor="c2",
        total=4,
        timestamp=T0,
    )
    validate(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 4
    assert bundle["timestamp"] == "2026-03-01T08:00:00Z"
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert urlsplit(links["self"]).path == "/fhir/r4/Observation"
    assert parse_qsl(urlsplit(links["self"]).query) == [
        ("patient", "pat-1"),
        ("code", "http://loinc.org|85354-9"),
        ("_cursor", "c1"),
    ]
    assert parse_qsl(urlsplit(links["next"]).query)[-1] == ("_cursor", "c2")
    assert [e["fullUrl"] for e in bundle["entry"]] == [f"{BASE}/Observation/{r['id']}" for r in page.resources]
    assert all(e["search"] == {"mode": "match"} for e in bundle["entry"])


def test_last_page_has_no_next_link_and_total_is_optional() -> None:
    bundle = searchset([], base_url=BASE, resource_type="Observation")
    validate(bundle)
    assert [link["relation"] for link in bundle["link"]] == ["self"]
    assert "total" not in bundle
    with pytest.raises(InvalidRecord):
        searchset([{"resourceType": "Patient", "id": "a"}], base_url=BASE, resource_type="Patient", total=0)


PATIENT = PatientRecord("pat-1", "org1", "Ada", mrn="42")
DEVICES = [
    DeviceRecord("cuff", "org1", "agt-1", "pat-1", "blood_pressure", battery_pct=55, last_seen=T0),
    DeviceRecord("ox", "org1", "agt-1", "pat-1", "pulse_oximeter"),
]


def test_export_lines_are_valid_resources_in_order() -> None:
    lines = list(everything_ndjson(PATIENT, DEVICES, day_of_readings(3)))
    resources = [json.loads(line) for line in lines]
    assert all(line.endswith("\n") and "\n" not in line[:-1] for line in lines)
    for r in resources:
        validate(r)
    kinds = [(r["resourceType"], r["id"].split(".")[0].split("-")[0]) for r in resources]
    assert kinds[:5] == [
        ("Patient", "pat"),
        ("Device", "phg"),
        ("Device", "phd"),
        ("Device", "phd"),
        ("Observation", "bat"),
    ]
    assert [k for k in kinds[5:]] == [("Observation", "bp"), ("Observation", "rd")] * 3
    assert len({r["id"] for r in resources}) == len(resources)


def test_export_streams_without_reading_everything() -> None:
    consumed = 0

    def endless():
        nonlocal consumed
        for n in itertools.count():
            consumed += 1
            yield ReadingRecord("pat-1", "org1", "agt-1", "ox", n, "spo2", 97.0, "%", T0 + timedelta(seconds=n))

    lines = everything_ndjson(PATIENT, DEVICES, endless())
    first = list(itertools.islice(lines, 5 + 10))  # patient, 1 gateway, 2 devices, 1 battery, 10 observations
    assert len(first) == 15
    assert consumed <= 11  # one reading of look-ahead for the grouping
