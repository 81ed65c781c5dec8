-- Patient enrolment for the clinician workspace: demographics, the conditions that set the alert
-- defaults, consent to monitoring (date and version, append-only history), monitoring episodes
-- (the CMS billing periods count from an episode's start; its set-up and education is 99453's
-- evidence), every version of a patient's alert settings, and the practice's time zone (billing
-- days and months are the practice's calendar).

ALTER TABLE organizations
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC' CHECK (time_zone ~ '^[A-Za-z0-9_+/-]{1,64}$');

ALTER TABLE patients
    ADD COLUMN sex text CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    ADD COLUMN phone text CHECK (length(phone) BETWEEN 1 AND 40),
    ADD COLUMN conditions text[] NOT NULL DEFAULT '{}'
        CHECK (conditions <@ ARRAY['heart_failure', 'hypertension', 'copd', 'diabetes']::text[]),
    -- Bumped by every change of `settings` (optimistic concurrency: a form sends the version it read).
    ADD COLUMN settings_version integer NOT NULL DEFAULT 1 CHECK (settings_version > 0),
    ADD COLUMN enrolled_at timestamptz,
    ADD COLUMN enrolled_by uuid REFERENCES users;

-- Consent to remote monitoring: one row per decision, never updated; the newest row is in force.
CREATE TABLE patient_consents (
    consent_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        text NOT NULL,
    patient_id    text NOT NULL,
    decision      text NOT NULL CHECK (decision IN ('granted', 'withdrawn')),
    -- The version of the consent text the patient agreed to (e.g. '2026-01' or 'rpm-v3').
    version       text NOT NULL CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$'),
    decided_on    date NOT NULL,
    method        text NOT NULL CHECK (method IN ('written', 'verbal', 'electronic')),
    recorded_by   uuid NOT NULL REFERENCES users,
    recorded_at   timestamptz NOT NULL,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id)
);
CREATE INDEX patient_consents_patient ON patient_consents (patient_id, recorded_at DESC);

-- An episode of remote monitoring care. At most one open episode per patient.
CREATE TABLE monitoring_episodes (
    episode_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       text NOT NULL,
    patient_id   text NOT NULL,
    start_date   date NOT NULL,
    end_date     date,
    -- Set-up of the equipment and education of the patient on its use (CPT 99453's evidence).
    setup_at     timestamptz,
    setup_by     uuid REFERENCES users,
    created_at   timestamptz NOT NULL,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK (end_date IS NULL OR end_date >= start_date),
    CHECK ((setup_at IS NULL) = (setup_by IS NULL))
);
CREATE UNIQUE INDEX monitoring_episodes_open ON monitoring_episodes (patient_id) WHERE end_date IS NULL;
CREATE INDEX monitoring_episodes_org ON monitoring_episodes (org_id, start_date);

-- Every version of a patient's alert settings document: what was in force when.
CREATE TABLE patient_settings_history (
    patient_id   text NOT NULL,
    org_id       text NOT NULL,
    version      integer NOT NULL,
    settings     jsonb NOT NULL,
    changed_by   uuid REFERENCES users,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (patient_id, version),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id)
);
