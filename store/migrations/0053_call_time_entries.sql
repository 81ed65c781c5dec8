-- Time a clinician spends in a video call becomes billing time (interactive communication): one
-- time entry per 'left' call event of a clinician seat, written in the transaction that stores the
-- event. call_event_id names the event the entry was made from; the unique index makes writing it
-- again (a retried transaction) a no-op.
ALTER TABLE time_entries ADD COLUMN call_event_id bigint REFERENCES consult_call_events;
CREATE UNIQUE INDEX time_entries_one_per_call_event ON time_entries (call_event_id) WHERE call_event_id IS NOT NULL;
