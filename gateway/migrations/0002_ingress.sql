-- Blobs known to the database, ingress archives with their manifests, and the automatic checks
-- attached to applications.

CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE ingress_archives (
    application_id TEXT PRIMARY KEY REFERENCES applications (id),
    name           TEXT NOT NULL,
    blob_sha256    TEXT NOT NULL REFERENCES blobs (sha256),
    -- tar or tar.zst
    format         TEXT NOT NULL,
    upload_bytes   BIGINT NOT NULL,
    -- SHA-256 of the uncompressed tar stream.
    tar_sha256     TEXT NOT NULL,
    unpacked_bytes BIGINT NOT NULL,
    entry_count    BIGINT NOT NULL
);
CREATE INDEX ingress_archives_by_blob ON ingress_archives (blob_sha256);

CREATE TABLE archive_entries (
    application_id TEXT NOT NULL REFERENCES applications (id),
    path           TEXT NOT NULL,
    -- file or directory
    kind           TEXT NOT NULL,
    size           BIGINT NOT NULL,
    mode           BIGINT NOT NULL,
    sha256         TEXT,
    PRIMARY KEY (application_id, path)
);

CREATE TABLE application_checks (
    application_id TEXT NOT NULL REFERENCES applications (id),
    check_name     TEXT NOT NULL,
    -- pass, review or fail
    outcome        TEXT NOT NULL,
    -- JSON array of strings
    reasons        TEXT NOT NULL,
    PRIMARY KEY (application_id, check_name)
);
