-- Video consultation requests: the minimal storage the escalation walk needs. The care-team
-- communication work builds scheduling, rooms and messaging on these rows.
CREATE TABLE consult_requests (
    request_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        text NOT NULL,
    patient_id    text NOT NULL,
    alert_id      bigint REFERENCES alerts,
    kind          text NOT NULL DEFAULT 'video' CHECK (kind IN ('video')),
    requested_at  timestamptz NOT NULL,
    requested_by  text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT 'requested'
                  CHECK (status IN ('requested', 'scheduled', 'in_progress', 'completed', 'canceled')),
    updated_at    timestamptz NOT NULL,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id)
);
-- An alert asks for at most one consultation, whatever the number of walks or retries.
CREATE UNIQUE INDEX consult_requests_one_per_alert ON consult_requests (alert_id) WHERE alert_id IS NOT NULL;
CREATE INDEX consult_requests_org_status ON consult_requests (org_id, status, requested_at);
