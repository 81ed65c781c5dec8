-- The clinician's panel shows the latest value of each metric for every patient on a page. Read
-- from raw readings that is one index probe per (patient, metric), about 2,000 for a page of 200
-- patients (35 ms of the panel's time at 1 million readings, bench/api.py). This table holds the
-- answer. store.summaries keeps it by following the readings watermark (the rows with
-- summary_watermark.xid <= ingest_xid < the oldest running transaction, as the alert engine follows
-- readings), so ingest's insert is unchanged and no ingest transaction ever waits on its rows.
--
-- (6-hour buckets for the sparklines were tried too and dropped: at a few readings per patient and
-- metric per day a bucket holds one or two readings, so they were slower than the raw index scan.)

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

-- One row: every reading with ingest_xid below it is in latest_readings.
CREATE TABLE summary_watermark (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    xid         xid8 NOT NULL
);

-- Existing readings: those of every transaction finished before this one's snapshot (a reading
-- committed later is above the watermark and counted by the first advance).
INSERT INTO summary_watermark (xid) VALUES (pg_snapshot_xmin(pg_current_snapshot()));

INSERT INTO latest_readings (org_id, patient_id, metric, time, value, device_id)
SELECT DISTINCT ON (org_id, patient_id, metric) org_id, patient_id, metric, time, value, device_id
FROM readings WHERE ingest_xid < (SELECT xid FROM summary_watermark)
ORDER BY org_id, patient_id, metric, time DESC, device_id;
