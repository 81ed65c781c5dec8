-- Per-user notification preferences (issue 13): which channels, where to reach them (SMS number,
-- push token) and quiet hours in the user's own time zone. A user without a row gets email and
-- in-app, no quiet hours. Critical alerts ignore quiet hours and go to every channel the user can
-- be reached on.
CREATE TABLE notification_preferences (
    user_id      uuid PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    org_id       text NOT NULL REFERENCES organizations,
    channels     text[] NOT NULL DEFAULT '{email,in_app}'
                 CHECK (channels <@ ARRAY['email', 'sms', 'push', 'in_app']::text[]),
    sms_number   text CHECK (sms_number ~ '^\+[1-9][0-9]{6,14}$'),
    push_token   text CHECK (length(push_token) BETWEEN 1 AND 4096),
    time_zone    text NOT NULL DEFAULT 'UTC' CHECK (length(time_zone) BETWEEN 1 AND 64),
    -- Quiet hours as local wall-clock times; start > end spans midnight (22:00-07:00).
    quiet_start  time,
    quiet_end    time,
    updated_at   timestamptz NOT NULL,
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL)),
    CHECK (quiet_start IS NULL OR quiet_start <> quiet_end)
);
