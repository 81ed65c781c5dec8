-- Baselines a clinician accepted as a patient's own (issue 14): "this patient's normal sits beyond
-- the population line" (a stable COPD patient at 92-93 % SpO2), recorded with who and why. The rule
-- (today the threshold rules, keyed like 'threshold:spo2:low') then takes the value as the
-- patient's normal. One baseline in force per patient and rule; revoked ones stay as history.
CREATE TABLE patient_baselines (
    baseline_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id         text NOT NULL,
    patient_id     text NOT NULL,
    rule           text NOT NULL CHECK (length(rule) BETWEEN 1 AND 200),
    value          double precision NOT NULL,
    reason         text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    accepted_by    text NOT NULL CHECK (length(accepted_by) BETWEEN 1 AND 200),
    accepted_at    timestamptz NOT NULL,
    alert_id       bigint REFERENCES alerts,
    revoked_by     text,
    revoked_at     timestamptz,
    revoke_reason  text,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE UNIQUE INDEX patient_baselines_one_in_force ON patient_baselines (patient_id, rule) WHERE revoked_at IS NULL;
