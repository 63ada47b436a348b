-- Portable SQL: the same migrations run on SQLite and PostgreSQL.
-- Projects, their members, applications to the committee, decisions, attachments and the
-- hash-chained audit log. Timestamps are RFC 3339 UTC text, which sorts as time does.

CREATE TABLE projects (
    id           TEXT PRIMARY KEY,
    title        TEXT NOT NULL,
    grant_number TEXT,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL
);

CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects (id),
    subject    TEXT NOT NULL,
    role       TEXT NOT NULL,
    added_at   TEXT NOT NULL,
    added_by   TEXT NOT NULL,
    PRIMARY KEY (project_id, subject, role)
);
CREATE INDEX project_members_by_subject ON project_members (subject);

CREATE TABLE applications (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    requester   TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL,
    round       BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX applications_by_project ON applications (project_id, created_at);
CREATE INDEX applications_by_state ON applications (state, created_at);

CREATE TABLE decisions (
    application_id TEXT NOT NULL REFERENCES applications (id),
    round          BIGINT NOT NULL,
    reviewer       TEXT NOT NULL,
    choice         TEXT NOT NULL,
    comment        TEXT NOT NULL,
    decided_at     TEXT NOT NULL,
    -- One person, one vote per round, whatever the code above does.
    PRIMARY KEY (application_id, round, reviewer)
);

CREATE TABLE attachments (
    id             TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (id),
    kind           TEXT NOT NULL,
    author         TEXT NOT NULL,
    body           TEXT NOT NULL,
    file_name      TEXT,
    file_sha256    TEXT,
    file_size      BIGINT,
    created_at     TEXT NOT NULL
);
CREATE INDEX attachments_by_application ON attachments (application_id, created_at);

CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

-- The chain's head. Every write transaction starts by updating this one row, which serialises
-- writers on SQLite and PostgreSQL alike and gives each event its place in the chain.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
