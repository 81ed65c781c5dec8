-- Readings: one row per measured value, in the metric's canonical UCUM unit.
--
-- Dedup key (agent_id, seq, time): the agent's own sequence number plus the measured time; an
-- envelope delivered twice inserts nothing the second time (INSERT ... ON CONFLICT DO NOTHING).
--
-- ingest_xid: the id of the transaction that stored the row. Consumers (the alert engine) follow
-- readings by this watermark and only ever read rows with
--     watermark <= ingest_xid < pg_snapshot_xmin(pg_current_snapshot())
-- Every transaction below the snapshot's xmin has finished, so a row committed late by a slow
-- concurrent writer can never appear behind a watermark that has already passed it (a serial or
-- identity column would allow exactly that skip).
CREATE TABLE readings (
    time         timestamptz NOT NULL,
    org_id       text NOT NULL,
    patient_id   text NOT NULL,
    agent_id     text NOT NULL,
    device_id    text NOT NULL,
    metric       text NOT NULL,
    value        double precision NOT NULL,
    seq          bigint NOT NULL CHECK (seq >= 0),
    received_at  timestamptz NOT NULL DEFAULT now(),
    flags        text[] NOT NULL DEFAULT '{}',
    device_time  text,
    ingest_xid   xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT readings_dedup UNIQUE (agent_id, seq, time)
);

-- Charts and "latest value" read one patient's metric in time order. Arrival order interleaves
-- patients, so a heap scan would touch one page per row on a cold 30-day chart; this covering index
-- keeps a patient's metric together and answers both queries with an index-only scan.
CREATE INDEX readings_patient_metric_time ON readings (patient_id, metric, time DESC) INCLUDE (value);
CREATE INDEX readings_ingest_xid ON readings (ingest_xid);
