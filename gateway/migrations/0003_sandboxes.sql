-- Images allowed for sandboxes (pinned by ID), sandboxes, what is staged in them, and runs.

CREATE TABLE images (
    name       TEXT PRIMARY KEY,
    image_id   TEXT NOT NULL,
    size       BIGINT NOT NULL,
    allowed_by TEXT NOT NULL,
    allowed_at TEXT NOT NULL
);

CREATE TABLE sandboxes (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id),
    image_name     TEXT NOT NULL,
    image_id       TEXT NOT NULL,
    resource_class TEXT NOT NULL,
    -- ready or removed
    state          TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    removed_at     TEXT
);
CREATE INDEX sandboxes_by_project ON sandboxes (project_id, created_at);

CREATE TABLE sandbox_ingress (
    sandbox_id     TEXT NOT NULL REFERENCES sandboxes (id),
    application_id TEXT NOT NULL REFERENCES applications (id),
    -- SHA-256 of the tar as staged (headers rewritten: owned by root, read-only).
    staged_sha256  TEXT NOT NULL,
    staged_by      TEXT NOT NULL,
    staged_at      TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, application_id)
);

CREATE TABLE sandbox_datasets (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id),
    dataset_id TEXT NOT NULL,
    host_path  TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, dataset_id)
);

CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    sandbox_id    TEXT NOT NULL REFERENCES sandboxes (id),
    project_id    TEXT NOT NULL,
    requester     TEXT NOT NULL,
    -- JSON array of strings
    cmd           TEXT NOT NULL,
    timeout_secs  BIGINT NOT NULL,
    -- queued, running or finished
    state         TEXT NOT NULL,
    -- when finished: exited, oom_killed, timed_out, output_quota_exceeded, log_limit_exceeded,
    -- vanished or failed
    outcome       TEXT,
    exit_code     BIGINT,
    detail        TEXT,
    container_id  TEXT,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    log_bytes     BIGINT,
    log_sha256    TEXT,
    log_truncated BIGINT
);
CREATE INDEX runs_by_sandbox ON runs (sandbox_id, created_at);
CREATE INDEX runs_by_state ON runs (state);
