-- A listed dataset's content in the STORE: what was uploaded (one row per dataset, written in
-- the transaction that lists it) and its manifest, one row per file or folder with the file's
-- SHA-256. `manifest_sha256` is the SHA-256 of the manifest as `sha256sum` prints it (one
-- `<sha256>  <path>` line per file, sorted by path). Same SQL on both engines.

CREATE TABLE dataset_contents (
    dataset_id      TEXT PRIMARY KEY REFERENCES datasets (id),
    files           BIGINT NOT NULL,
    bytes           BIGINT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    -- The upload as sent (a tar or a tar.zst), and the tar inside it.
    upload_sha256   TEXT NOT NULL,
    upload_bytes    BIGINT NOT NULL,
    tar_sha256      TEXT NOT NULL,
    format          TEXT NOT NULL,
    uploaded_by     TEXT NOT NULL,
    uploaded_at     TEXT NOT NULL
);

CREATE TABLE dataset_files (
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    path       TEXT NOT NULL,
    -- file or directory
    kind       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT,
    PRIMARY KEY (dataset_id, path)
);
