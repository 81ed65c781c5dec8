-- Video consultation rooms (one per consult request), their participants and call events.
CREATE TABLE consult_rooms (
    room_id          text PRIMARY KEY CHECK (room_id ~ '^[A-Za-z0-9_-]{16,64}$'),
    org_id           text NOT NULL REFERENCES organizations,
    request_id       bigint NOT NULL UNIQUE REFERENCES consult_requests,
    patient_id       text NOT NULL,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'ended')),
    scheduled_start  timestamptz,
    scheduled_end    timestamptz,
    created_at       timestamptz NOT NULL,
    created_by       text NOT NULL,
    started_at       timestamptz,
    ended_at         timestamptz,
    ended_by         text,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK ((status = 'ended') = (ended_at IS NOT NULL)),
    CHECK ((scheduled_start IS NULL) = (scheduled_end IS NULL)),
    CHECK (scheduled_end IS NULL OR scheduled_end > scheduled_start)
);
CREATE INDEX consult_rooms_org ON consult_rooms (org_id, created_at);

-- Who may join a room. generation is bumped to revoke a join link (removal also refuses it).
CREATE TABLE consult_room_participants (
    participant_id  text PRIMARY KEY CHECK (participant_id ~ '^[A-Za-z0-9_-]{8,64}$'),
    room_id         text NOT NULL REFERENCES consult_rooms,
    org_id          text NOT NULL,
    role            text NOT NULL CHECK (role IN ('patient', 'clinician', 'interpreter', 'family')),
    user_id         text CHECK (char_length(user_id) BETWEEN 1 AND 128),
    -- An invited guest without an account (e.g. a family member): how the room shows them.
    guest_label     text CHECK (char_length(guest_label) BETWEEN 1 AND 200),
    generation      integer NOT NULL DEFAULT 1 CHECK (generation >= 1),
    added_at        timestamptz NOT NULL,
    added_by        text NOT NULL,
    removed_at      timestamptz,
    removed_by      text,
    CHECK (user_id IS NOT NULL OR guest_label IS NOT NULL),
    CHECK (role <> 'clinician' OR user_id IS NOT NULL)
);
CREATE INDEX consult_room_participants_room ON consult_room_participants (room_id);
-- One live seat per user and one patient per room.
CREATE UNIQUE INDEX consult_room_participants_one_user
    ON consult_room_participants (room_id, user_id) WHERE removed_at IS NULL AND user_id IS NOT NULL;
CREATE UNIQUE INDEX consult_room_participants_one_patient
    ON consult_room_participants (room_id) WHERE removed_at IS NULL AND role = 'patient';

-- At most four live participants per room (a peer-to-peer mesh beyond four needs an SFU). The room
-- row is locked first, so concurrent additions to one room are serialised and counted exactly.
CREATE FUNCTION consult_room_participants_max_four() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.removed_at IS NOT NULL THEN
        RETURN NEW;
    END IF;
    PERFORM 1 FROM consult_rooms WHERE room_id = NEW.room_id FOR UPDATE;
    IF (SELECT count(*) FROM consult_room_participants p
        WHERE p.room_id = NEW.room_id AND p.removed_at IS NULL AND p.participant_id <> NEW.participant_id) >= 4 THEN
        RAISE EXCEPTION 'a room holds at most four participants'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'consult_room_participants_max_four';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER consult_room_participants_max_four
    BEFORE INSERT OR UPDATE OF removed_at ON consult_room_participants
    FOR EACH ROW EXECUTE FUNCTION consult_room_participants_max_four();

-- What happened in the call, for the consult record and billing time. in_call_s is set on 'left'
-- events: the seconds this participant spent in the call (admitted or joined directly) this time.
CREATE TABLE consult_call_events (
    event_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id         text NOT NULL REFERENCES consult_rooms,
    org_id          text NOT NULL,
    participant_id  text REFERENCES consult_room_participants,
    kind            text NOT NULL CHECK (kind IN ('joined', 'admitted', 'disconnected', 'resumed', 'left', 'ended')),
    at              timestamptz NOT NULL,
    in_call_s       double precision CHECK (in_call_s >= 0),
    detail          text NOT NULL DEFAULT '' CHECK (char_length(detail) <= 64),
    CHECK ((kind = 'left') = (in_call_s IS NOT NULL))
);
CREATE INDEX consult_call_events_room ON consult_call_events (room_id, event_id);

-- Join attempts that were refused (tampered, expired, revoked or misdirected links). The room id is
-- the one the caller claimed and may not exist, so no foreign key.
CREATE TABLE consult_join_refusals (
    refusal_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL,
    room_id         text NOT NULL CHECK (char_length(room_id) <= 64),
    participant_id  text CHECK (char_length(participant_id) <= 64),
    reason          text NOT NULL CHECK (reason ~ '^[a-z_]{1,40}$')
);
CREATE INDEX consult_join_refusals_at ON consult_join_refusals (at);
