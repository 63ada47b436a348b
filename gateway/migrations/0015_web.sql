-- The public catalog's search text, and the web pages' sessions. Same SQL on both engines.

-- One row per dataset: the public items of its DMP folded for a case-insensitive search
-- (`policy::dmp::catalog::search_text`), written by the catalog when it first meets the
-- dataset. Whether a dataset is shown is decided by its category in `datasets`, read with it.
CREATE TABLE catalog_search (
    dataset_id TEXT PRIMARY KEY REFERENCES datasets (id),
    search     TEXT NOT NULL
);

-- A signed-in browser. `id_sha256` is the SHA-256 of the cookie's random id (the id itself is
-- never stored); the caller's subject, roles and institution are those of the token verified
-- at sign-in, and the session ends at `expires_at` (Unix seconds) at the latest, never after
-- the token would have. `csrf` is the secret every form of the session carries.
CREATE TABLE web_sessions (
    id_sha256   TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    roles       TEXT NOT NULL,
    institution TEXT,
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
