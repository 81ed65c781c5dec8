-- Ingest state that must commit in the same transaction as the readings it describes.
--
-- agent_receipts.through: every sequence number <= through of this agent is committed, was declared
-- a gap by the agent, or was dead-lettered after its signature verified (it will never be
-- accepted). It is what the signed receipt on .../down/receipts carries: the agent deletes those
-- readings from its outbox. Agents number readings from 1, so 0 means "nothing yet".
CREATE TABLE agent_receipts (
    agent_id    text PRIMARY KEY,
    org_id      text NOT NULL,
    through     bigint NOT NULL DEFAULT 0 CHECK (through >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, agent_id)
);

-- Resolved sequence ranges above `through`, waiting for the hole below them to fill (shared
-- subscriptions deliver out of order). Adjacent ranges are merged, so there are about as many
-- rows as holes.
CREATE TABLE agent_resolved (
    agent_id   text NOT NULL REFERENCES agent_receipts ON DELETE CASCADE,
    first_seq  bigint NOT NULL,
    last_seq   bigint NOT NULL,
    CHECK (first_seq <= last_seq),
    PRIMARY KEY (agent_id, first_seq)
);

-- Sequence ranges an agent declared it will never deliver (its outbox overflowed): the alert
-- engine reports missing data from these, never from arrival order.
CREATE TABLE agent_gaps (
    agent_id     text NOT NULL,
    org_id       text NOT NULL,
    first_seq    bigint NOT NULL,
    last_seq     bigint NOT NULL,
    reported_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (first_seq <= last_seq),
    PRIMARY KEY (agent_id, first_seq, last_seq),
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, agent_id)
);
