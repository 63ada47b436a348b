-- Access to datasets: one row per (project, dataset) an approved access application grants,
-- written in the transaction that approves it. `until_date` (YYYY-MM-DD, UTC) is the last day
-- the access is in force (none: no end); `revoked_at` ends it at once. Same SQL on both engines.

CREATE TABLE access_grants (
    application_id TEXT NOT NULL REFERENCES applications (id),
    project_id     TEXT NOT NULL REFERENCES projects (id),
    dataset_id     TEXT NOT NULL REFERENCES datasets (id),
    until_date     TEXT,
    -- 1 when commercial use is allowed, 0 otherwise.
    commercial     BIGINT NOT NULL,
    granted_at     TEXT NOT NULL,
    revoked_at     TEXT,
    PRIMARY KEY (application_id, dataset_id)
);
CREATE INDEX access_grants_by_project ON access_grants (project_id, dataset_id);
