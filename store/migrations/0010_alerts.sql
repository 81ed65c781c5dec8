-- Alerts: one row per alert, its full event history, the escalation actions it caused, the alert
-- engine's per-partition ingest watermarks and the organisations' escalation policies.
--
-- One alert that is not resolved per (patient, rule): a re-trigger updates that row. "rule" is the
-- stable key of the rule instance (e.g. 'threshold:spo2', 'news2', 'missing_data').
-- opened_at and friends are clinical times (the engine's clock), not row insertion times.

CREATE TABLE alerts (
    alert_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id              text NOT NULL,
    patient_id          text NOT NULL,
    rule                text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('threshold', 'news2', 'trend', 'missing_data', 'anomaly')),
    metric              text,
    severity            text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    state               text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    summary             text NOT NULL,
    evidence            jsonb NOT NULL,
    detail              jsonb NOT NULL DEFAULT '{}'::jsonb,
    opened_at           timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    last_triggered_at   timestamptz NOT NULL,
    -- Set when an evaluation found the condition clear; auto-resolution counts from here.
    cleared_since       timestamptz,
    assignee            text,
    snoozed_until       timestamptz,
    acknowledged_at     timestamptz,
    acknowledged_by     text,
    resolved_at         timestamptz,
    resolved_by         text,
    resolution          text CHECK (resolution IN ('clinician', 'auto')),
    resolution_note     text,
    -- The escalation walk: which severity's policy, when it started, the next step and when it is due.
    -- esc_next_at IS NULL means the walk is stopped (acknowledged, resolved, or the policy is done).
    esc_severity        text CHECK (esc_severity IN ('low', 'medium', 'high', 'critical')),
    esc_round           integer NOT NULL DEFAULT 0,
    esc_started_at      timestamptz,
    esc_step            integer NOT NULL DEFAULT 0,
    esc_next_at         timestamptz,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE UNIQUE INDEX alerts_one_open_per_rule ON alerts (patient_id, rule) WHERE state <> 'resolved';
CREATE INDEX alerts_org_state ON alerts (org_id, state, opened_at DESC);
CREATE INDEX alerts_patient ON alerts (patient_id, opened_at DESC);
CREATE INDEX alerts_escalation_due ON alerts (esc_next_at) WHERE esc_next_at IS NOT NULL;

CREATE TABLE alert_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    org_id      text NOT NULL,
    at          timestamptz NOT NULL,
    type        text NOT NULL CHECK (type IN (
                    'opened', 'retriggered', 'severity_raised', 'reopened', 'cleared', 'acknowledged',
                    'resolved', 'auto_resolved', 'assigned', 'snoozed', 'unsnoozed', 'escalation')),
    actor       text NOT NULL,
    note        text,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, event_id);

-- Escalation actions: recorded 'due' when the walk reaches them; an EscalationSink marks them 'done'
-- (or the care-team delivery does, later). One row per (alert, round, step): a walk never repeats one.
CREATE TABLE alert_actions (
    action_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    org_id      text NOT NULL,
    patient_id  text NOT NULL,
    round       integer NOT NULL,
    step        integer NOT NULL,
    action      text NOT NULL CHECK (action IN (
                    'notify_care_team', 'message_patient', 'page_backup', 'request_video_consult')),
    severity    text NOT NULL,
    due_at      timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'due' CHECK (status IN ('due', 'done', 'canceled')),
    done_at     timestamptz,
    params      jsonb NOT NULL DEFAULT '{}'::jsonb,
    result      jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (alert_id, round, step)
);
CREATE INDEX alert_actions_due ON alert_actions (status, due_at) WHERE status = 'due';

-- The alert engine's progress through the readings feed, per patient partition (see store/feed.py).
CREATE TABLE alert_watermarks (
    partition_count  integer NOT NULL CHECK (partition_count > 0),
    partition        integer NOT NULL CHECK (partition >= 0 AND partition < partition_count),
    watermark        bigint NOT NULL CHECK (watermark >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition_count, partition)
);

-- Escalation policy per organisation (versioned); organisations without a row use the built-in default.
CREATE TABLE escalation_policies (
    org_id      text PRIMARY KEY REFERENCES organizations,
    version     integer NOT NULL DEFAULT 1 CHECK (version > 0),
    policy      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
