-- Clinical staff time per patient (CMS 99470/99457/99458 evidence): a running timer (ended_at and
-- minutes NULL) or a finished entry; manual entries carry a reason. One running timer per user.
-- An edit or deletion keeps the previous version in time_entry_revisions.
CREATE TABLE time_entries (
    entry_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        text NOT NULL,
    patient_id    text NOT NULL,
    clinician_id  uuid NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('review', 'interactive_communication', 'care_planning')),
    capture       text NOT NULL CHECK (capture IN ('timer', 'manual')),
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    minutes       integer CHECK (minutes BETWEEN 0 AND 1440),
    reason        text CHECK (length(reason) BETWEEN 3 AND 1000),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    FOREIGN KEY (org_id, clinician_id) REFERENCES users (org_id, user_id),
    CHECK ((ended_at IS NULL) = (minutes IS NULL)),
    CHECK (ended_at IS NULL OR ended_at >= started_at),
    CHECK (capture = 'timer' OR reason IS NOT NULL),
    CHECK (capture = 'timer' OR ended_at IS NOT NULL)
);
CREATE UNIQUE INDEX time_entries_one_running ON time_entries (clinician_id)
    WHERE ended_at IS NULL AND deleted_at IS NULL;
CREATE INDEX time_entries_patient ON time_entries (patient_id, started_at DESC);
CREATE INDEX time_entries_org_started ON time_entries (org_id, started_at);

CREATE TABLE time_entry_revisions (
    revision_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id     uuid NOT NULL REFERENCES time_entries,
    org_id       text NOT NULL,
    revised_at   timestamptz NOT NULL,
    revised_by   uuid NOT NULL REFERENCES users,
    change       text NOT NULL CHECK (change IN ('edit', 'delete')),
    previous     jsonb NOT NULL
);
CREATE INDEX time_entry_revisions_entry ON time_entry_revisions (entry_id, revision_id);
