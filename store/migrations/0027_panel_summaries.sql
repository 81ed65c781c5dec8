-- What the clinician's panel shows for every patient on a page (a 7-day sparkline per metric,
-- adherence over 30 days, the latest value of each metric), read from raw readings, cost one index
-- scan per (patient, metric) over up to 30 days of rows: about 300 ms for a page of 200 patients
-- on 1 million readings (bench/api.py). These tables hold the same answers. store.summaries keeps
-- them by following the readings watermark (the rows with summary_watermark.xid <= ingest_xid <
-- the oldest running transaction, as the alert engine follows readings), so ingest's insert is
-- unchanged and no two ingest transactions ever wait on one summary row.

-- Per patient, metric and 6-hour bucket (aligned to 2000-01-01Z like every rollup): how many
-- readings and their sum. Sparklines are total / n per bucket; adherence counts days with a bucket.
CREATE TABLE reading_buckets (
    org_id      text NOT NULL,
    patient_id  text NOT NULL,
    metric      text NOT NULL,
    bucket      timestamptz NOT NULL,
    n           bigint NOT NULL CHECK (n > 0),
    total       double precision NOT NULL,
    PRIMARY KEY (org_id, patient_id, metric, bucket)
);

-- The newest reading of each metric per patient (by measured time: a history upload of older
-- readings never replaces it).
CREATE TABLE latest_readings (
    org_id      text NOT NULL,
    patient_id  text NOT NULL,
    metric      text NOT NULL,
    time        timestamptz NOT NULL,
    value       double precision NOT NULL,
    device_id   text NOT NULL,
    PRIMARY KEY (org_id, patient_id, metric)
);

-- One row: every reading with ingest_xid below it is in the two tables above.
CREATE TABLE summary_watermark (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    xid         xid8 NOT NULL
);

-- Existing readings: those of every transaction finished before this one's snapshot (a reading
-- committed later is above the watermark and summarised by the first advance).
INSERT INTO summary_watermark (xid) VALUES (pg_snapshot_xmin(pg_current_snapshot()));

INSERT INTO reading_buckets (org_id, patient_id, metric, bucket, n, total)
SELECT org_id, patient_id, metric, date_bin('6 hours', time, '2000-01-01 00:00:00+00'), count(*), sum(value)
FROM readings WHERE ingest_xid < (SELECT xid FROM summary_watermark) GROUP BY 1, 2, 3, 4;

INSERT INTO latest_readings (org_id, patient_id, metric, time, value, device_id)
SELECT DISTINCT ON (org_id, patient_id, metric) org_id, patient_id, metric, time, value, device_id
FROM readings WHERE ingest_xid < (SELECT xid FROM summary_watermark)
ORDER BY org_id, patient_id, metric, time DESC, device_id;
