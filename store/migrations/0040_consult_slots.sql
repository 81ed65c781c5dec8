-- Clinicians' availability slots and booking a consult request into one.
-- Users are referenced by an opaque user_id (the users table of the clinician workspace may add a
-- foreign key later). A slot holds at most one request (one column), a request sits in at most one
-- slot (unique index), and one clinician's live slots never overlap (trigger below).
CREATE TABLE consult_slots (
    slot_id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id              text NOT NULL REFERENCES organizations,
    clinician_user_id   text NOT NULL CHECK (char_length(clinician_user_id) BETWEEN 1 AND 128),
    starts_at           timestamptz NOT NULL,
    ends_at             timestamptz NOT NULL,
    status              text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'booked', 'withdrawn')),
    request_id          bigint REFERENCES consult_requests,
    booked_at           timestamptz,
    booked_by           text,
    created_at          timestamptz NOT NULL,
    created_by          text NOT NULL,
    CHECK (ends_at > starts_at),
    CHECK (ends_at - starts_at <= interval '12 hours'),
    -- booked <=> holds a request
    CHECK ((status = 'booked') = (request_id IS NOT NULL)),
    CHECK ((request_id IS NULL) = (booked_at IS NULL))
);
-- A request is booked into at most one slot: the constraint that makes double booking impossible
-- whatever the application does.
CREATE UNIQUE INDEX consult_slots_one_per_request ON consult_slots (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX consult_slots_clinician_time ON consult_slots (clinician_user_id, starts_at);
CREATE INDEX consult_slots_org_open ON consult_slots (org_id, starts_at) WHERE status = 'open';

-- One clinician's open or booked slots never overlap. An exclusion constraint would need btree_gist
-- (text equality in a GiST index), which not every PostgreSQL we run on offers; a per-clinician
-- transaction advisory lock serialises concurrent inserts for one clinician instead, and the
-- check then sees every committed slot (READ COMMITTED: each statement of a volatile function
-- takes a new snapshot after the lock is granted).
CREATE FUNCTION consult_slots_no_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'withdrawn' THEN
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('vigil.consult_slots:' || NEW.clinician_user_id, 0));
    IF EXISTS (
        SELECT 1 FROM consult_slots s
        WHERE s.clinician_user_id = NEW.clinician_user_id
          AND s.slot_id <> NEW.slot_id
          AND s.status <> 'withdrawn'
          AND tstzrange(s.starts_at, s.ends_at) && tstzrange(NEW.starts_at, NEW.ends_at)
    ) THEN
        RAISE EXCEPTION 'slot overlaps another slot of the same clinician'
            USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'consult_slots_no_overlap';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER consult_slots_no_overlap
    BEFORE INSERT OR UPDATE OF clinician_user_id, starts_at, ends_at, status ON consult_slots
    FOR EACH ROW EXECUTE FUNCTION consult_slots_no_overlap();
