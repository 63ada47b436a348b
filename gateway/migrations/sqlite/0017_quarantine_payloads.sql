-- SQLite's form of ../0017_quarantine_payloads.sql (see there): `egress_files` is rebuilt,
-- since SQLite cannot drop a foreign key in place (the gateway runs migrations on SQLite with
-- foreign keys off and checks them all after, db.rs). No table refers to `egress_files`.

ALTER TABLE egress_rounds ADD COLUMN payload TEXT;
ALTER TABLE egress_rounds ADD COLUMN sealed_keys TEXT;
ALTER TABLE egress_rounds ADD COLUMN full_chunks BIGINT;
ALTER TABLE egress_rounds ADD COLUMN seed TEXT;
ALTER TABLE egress_rounds ADD COLUMN header_recipient TEXT;
ALTER TABLE egress_rounds ADD COLUMN sealed_header TEXT;
ALTER TABLE egress_rounds ADD COLUMN package_hash TEXT;

CREATE TABLE egress_files_new (
    application_id TEXT NOT NULL REFERENCES applications (id),
    round          BIGINT NOT NULL,
    path           TEXT NOT NULL,
    size           BIGINT NOT NULL,
    sha256         TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    findings       TEXT NOT NULL,
    exception      TEXT,
    frame_offset   BIGINT,
    data_skip      BIGINT,
    PRIMARY KEY (application_id, round, path)
);
INSERT INTO egress_files_new (application_id, round, path, size, sha256, content_type, outcome,
                              findings, exception)
    SELECT application_id, round, path, size, sha256, content_type, outcome, findings, exception
    FROM egress_files;
DROP TABLE egress_files;
ALTER TABLE egress_files_new RENAME TO egress_files;
