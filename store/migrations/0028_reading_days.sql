-- The clinician panel's adherence (days of the last 30 with at least one reading) read from raw
-- readings is one index range scan per (patient, metric) over 30 days: about 2,000 scans and
-- 130,000 index entries for a page of 200 patients at 1 million readings, 100-200 ms of the
-- panel's time (docs/api.md). This table holds one row per patient and UTC day with a reading, so
-- a page costs 200 short index range scans of at most 30 entries each.
--
-- store.summaries keeps it exactly as it keeps latest_readings (migration 0027): by following the
-- readings watermark, in the same statement and transaction as latest_readings, so both always
-- count the same readings (summary_watermark.xid); reads add the not-yet-counted tail.

-- A UTC day on which the patient has at least one reading, and the earliest reading of that day:
-- "the last 30 days up to now" counts today only when a reading of today is before now.
CREATE TABLE reading_days (
    org_id      text NOT NULL,
    patient_id  text NOT NULL,
    day         date NOT NULL,
    first_at    timestamptz NOT NULL,
    PRIMARY KEY (org_id, patient_id, day) INCLUDE (first_at)  -- adherence reads the index only
);

-- One advancer at a time (store.summaries' lock): no advance can move the watermark between the
-- read of it below and this transaction's commit.
SELECT pg_advisory_xact_lock(6217579140700394829);

INSERT INTO reading_days (org_id, patient_id, day, first_at)
SELECT org_id, patient_id, (time AT TIME ZONE 'UTC')::date, min(time)
FROM readings WHERE ingest_xid < (SELECT coalesce((SELECT xid FROM summary_watermark), '0'::xid8))
GROUP BY 1, 2, 3;
