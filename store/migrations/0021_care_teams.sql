-- Care teams own panels of patients: a staff user sees the patients of the teams they belong to.
-- Composite foreign keys keep members, patients and teams inside one organisation.
CREATE TABLE care_teams (
    team_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      text NOT NULL REFERENCES organizations,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL,
    UNIQUE (org_id, team_id),
    UNIQUE (org_id, name)
);

CREATE TABLE care_team_members (
    team_id   uuid NOT NULL,
    org_id    text NOT NULL,
    user_id   uuid NOT NULL,
    added_at  timestamptz NOT NULL,
    PRIMARY KEY (team_id, user_id),
    FOREIGN KEY (org_id, team_id) REFERENCES care_teams (org_id, team_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, user_id) ON DELETE CASCADE
);
CREATE INDEX care_team_members_user ON care_team_members (user_id, team_id);

CREATE TABLE care_team_patients (
    team_id     uuid NOT NULL,
    org_id      text NOT NULL,
    patient_id  text NOT NULL,
    added_at    timestamptz NOT NULL,
    PRIMARY KEY (team_id, patient_id),
    FOREIGN KEY (org_id, team_id) REFERENCES care_teams (org_id, team_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id)
);
CREATE INDEX care_team_patients_patient ON care_team_patients (patient_id, team_id);

-- Break-glass (HIPAA 164.312(a)(2)(ii), emergency access): a staff user opens a patient outside
-- their panel with a reason, for a limited time; admins review every grant.
CREATE TABLE break_glass_grants (
    grant_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       text NOT NULL,
    user_id      uuid NOT NULL,
    patient_id   text NOT NULL,
    reason       text NOT NULL CHECK (length(reason) BETWEEN 10 AND 1000),
    granted_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    reviewed_at  timestamptz,
    reviewed_by  uuid REFERENCES users,
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, user_id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK (expires_at > granted_at)
);
CREATE INDEX break_glass_active ON break_glass_grants (user_id, patient_id, expires_at);
CREATE INDEX break_glass_review ON break_glass_grants (org_id, granted_at DESC) WHERE reviewed_at IS NULL;
