-- Egress: results copied out of a sandbox's output folder into quarantine, checked, reviewed
-- round by round, and released to the recipient the analyst registered.

-- One row per egress application: the sandbox its files come from.
CREATE TABLE egress_requests (
    application_id TEXT PRIMARY KEY REFERENCES applications (id),
    sandbox_id     TEXT NOT NULL REFERENCES sandboxes (id)
);
CREATE INDEX egress_requests_by_sandbox ON egress_requests (sandbox_id);

-- What each round asked for and what the checks said of it as a whole.
CREATE TABLE egress_rounds (
    application_id TEXT NOT NULL REFERENCES applications (id),
    round          BIGINT NOT NULL,
    -- JSON array of the paths asked for, relative to /vre/output
    paths          TEXT NOT NULL,
    total_bytes    BIGINT NOT NULL,
    outcome        TEXT NOT NULL,
    -- JSON array of request-wide findings
    findings       TEXT NOT NULL,
    rules_version  TEXT NOT NULL,
    requested_at   TEXT NOT NULL,
    PRIMARY KEY (application_id, round)
);

-- Every quarantined file of every round, by its blob.
CREATE TABLE egress_files (
    application_id TEXT NOT NULL REFERENCES applications (id),
    round          BIGINT NOT NULL,
    path           TEXT NOT NULL,
    size           BIGINT NOT NULL,
    sha256         TEXT NOT NULL REFERENCES blobs (sha256),
    content_type   TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    -- JSON array of findings: rule, outcome, message, row, column
    findings       TEXT NOT NULL,
    -- The analyst's reason why a failing file should still leave
    exception      TEXT,
    PRIMARY KEY (application_id, round, path)
);

-- Holds on a sandbox: while one is unexpired, no run of it starts and it cannot be removed.
-- A holder renews its lease while it works; a gateway that died lets it lapse.
CREATE TABLE sandbox_holds (
    id         TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id),
    purpose    TEXT NOT NULL,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sandbox_holds_by_sandbox ON sandbox_holds (sandbox_id);

-- The age recipient each person registered (changes are in the audit log).
CREATE TABLE recipients (
    subject       TEXT PRIMARY KEY,
    recipient     TEXT NOT NULL,
    registered_at TEXT NOT NULL
);

-- One release per approved egress application, made in the transaction that records the quorum.
CREATE TABLE releases (
    application_id TEXT PRIMARY KEY REFERENCES applications (id),
    round          BIGINT NOT NULL,
    requester      TEXT NOT NULL,
    -- The recipient registered when the quorum approved it
    recipient      TEXT NOT NULL,
    -- pending, built, refused or revoked
    state          TEXT NOT NULL,
    approved_at    TEXT NOT NULL,
    -- A builder's claim: which gateway, until when (renewed while it builds)
    claimed_by     TEXT,
    claimed_until  TEXT,
    attempts       BIGINT NOT NULL,
    package_sha256 TEXT REFERENCES blobs (sha256),
    package_size   BIGINT,
    detail         TEXT,
    built_at       TEXT,
    expires_at     TEXT,
    downloads      BIGINT NOT NULL,
    revoked_by     TEXT,
    revoked_at     TEXT
);
CREATE INDEX releases_by_state ON releases (state);
