-- Consult notes and follow-up tasks (issue 13 item 5).
--
-- A note documents a consultation (optionally the consult request it followed): subjective,
-- objective (the patient's recent vitals are pulled in when the note starts, and kept as a
-- snapshot), assessment and plan. A note is a series of versions: a draft can be saved again and
-- again; signing freezes the version (a trigger refuses any change to a signed version, and every
-- DELETE); an amendment is a new version that names the version it amends, itself drafted and
-- signed. A note has at most one open draft.
--
-- Follow-up tasks (re-measure in N hours, change thresholds, schedule the next consult, other) are
-- the care team's task list: open until done or canceled, due at a time.

CREATE TABLE consult_notes (
    note_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       text NOT NULL REFERENCES organizations,
    patient_id   text NOT NULL,
    request_id   bigint REFERENCES consult_requests,
    created_at   timestamptz NOT NULL,
    created_by   uuid NOT NULL REFERENCES users,
    UNIQUE (org_id, note_id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id)
);
CREATE INDEX consult_notes_patient ON consult_notes (org_id, patient_id, created_at DESC);

CREATE TABLE consult_note_versions (
    note_id         uuid NOT NULL REFERENCES consult_notes,
    version         integer NOT NULL CHECK (version >= 1),
    amends_version  integer,
    amend_reason    text CHECK (char_length(amend_reason) BETWEEN 1 AND 1000),
    subjective      text NOT NULL DEFAULT '' CHECK (char_length(subjective) <= 20000),
    objective       text NOT NULL DEFAULT '' CHECK (char_length(objective) <= 20000),
    vitals          jsonb NOT NULL DEFAULT '[]'::jsonb,
    assessment      text NOT NULL DEFAULT '' CHECK (char_length(assessment) <= 20000),
    plan            text NOT NULL DEFAULT '' CHECK (char_length(plan) <= 20000),
    written_at      timestamptz NOT NULL,
    written_by      uuid NOT NULL REFERENCES users,
    signed_at       timestamptz,
    signed_by       uuid REFERENCES users,
    PRIMARY KEY (note_id, version),
    FOREIGN KEY (note_id, amends_version) REFERENCES consult_note_versions (note_id, version),
    CHECK ((signed_at IS NULL) = (signed_by IS NULL)),
    CHECK ((amends_version IS NULL) = (amend_reason IS NULL)),
    CHECK (amends_version IS NULL OR amends_version < version)
);
CREATE UNIQUE INDEX consult_note_versions_one_draft ON consult_note_versions (note_id) WHERE signed_at IS NULL;

CREATE FUNCTION consult_note_versions_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.signed_at IS NOT NULL THEN
        RAISE EXCEPTION 'a signed consult note version is read-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.note_id <> OLD.note_id OR NEW.version <> OLD.version OR NEW.amends_version IS DISTINCT FROM OLD.amends_version
       OR NEW.vitals <> OLD.vitals THEN
        RAISE EXCEPTION 'a consult note version keeps its identity and vitals' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER consult_note_versions_frozen BEFORE UPDATE OR DELETE ON consult_note_versions
    FOR EACH ROW EXECUTE FUNCTION consult_note_versions_frozen();
REVOKE DELETE, TRUNCATE ON consult_notes, consult_note_versions FROM vigil_app, PUBLIC;

CREATE TABLE care_tasks (
    task_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       text NOT NULL REFERENCES organizations,
    patient_id   text NOT NULL,
    note_id      uuid REFERENCES consult_notes,
    kind         text NOT NULL CHECK (kind IN ('remeasure', 'change_thresholds', 'schedule_consult', 'other')),
    detail       text NOT NULL DEFAULT '' CHECK (char_length(detail) <= 2000),
    metrics      text[] NOT NULL DEFAULT '{}',
    due_at       timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'canceled')),
    created_at   timestamptz NOT NULL,
    created_by   uuid NOT NULL REFERENCES users,
    closed_at    timestamptz,
    closed_by    uuid REFERENCES users,
    close_note   text CHECK (char_length(close_note) <= 2000),
    UNIQUE (org_id, task_id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK ((status = 'open') = (closed_at IS NULL)),
    CHECK ((closed_at IS NULL) = (closed_by IS NULL))
);
CREATE INDEX care_tasks_open ON care_tasks (org_id, due_at) WHERE status = 'open';
CREATE INDEX care_tasks_patient ON care_tasks (org_id, patient_id, created_at DESC);
