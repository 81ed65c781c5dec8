-- Stored device history arriving (issue 14): when the alert engine consumes readings measured long
-- before they arrive (a meter uploading weeks of memory), it notes the patient here, in the
-- transaction that consumed them. Missing data is not judged for the patient until the upload has
-- settled: the history it would judge is still arriving. started_at is when the current upload began
-- (the hold is bounded from there), seen_at the last time an old reading arrived; both on the engine's
-- clock.
CREATE TABLE alert_backfills (
    patient_id  text PRIMARY KEY,
    org_id      text NOT NULL,
    started_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL,
    readings    bigint NOT NULL CHECK (readings >= 0),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id)
);
