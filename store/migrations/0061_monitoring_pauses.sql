-- Monitoring pauses (issue 14): a clinician pauses a patient's monitoring with a reason and an end
-- (a hospital admission, travel). While a pause is in force no missing-data alert is raised (the
-- patient is not expected to measure); charts show the pauses (store.monitoring_pauses.pauses_between).
-- ends_at is the effective end: the planned end, or the time monitoring was resumed early.
CREATE TABLE monitoring_pauses (
    pause_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id           text NOT NULL,
    patient_id       text NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    planned_ends_at  timestamptz NOT NULL,
    reason           text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_by       text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_at       timestamptz NOT NULL,
    resumed_by       text,
    resumed_at       timestamptz,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK (ends_at > starts_at),
    CHECK ((resumed_at IS NULL) = (resumed_by IS NULL))
);
CREATE INDEX monitoring_pauses_patient ON monitoring_pauses (patient_id, ends_at);
