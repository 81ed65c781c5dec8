-- Why an agent will never deliver a range of its readings (issue 14): the agent now says so in the
-- envelope (outbox_overflow, disk_full, quarantined: a stored row that no longer opened on the Pi).
-- NULL for gaps reported before, or by an agent that gives no reason.
ALTER TABLE agent_gaps ADD COLUMN reason text CHECK (reason IS NULL OR reason ~ '^[a-z_]{1,32}$');
