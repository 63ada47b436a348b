-- SQLite's form of ../0011_datasets.sql (see there): `applications` is rebuilt, since SQLite
-- cannot drop a NOT NULL in place. The gateway runs migrations on SQLite with foreign keys off
-- and checks them all before it goes on (db.rs), as SQLite's own procedure for a rebuild asks;
-- the tables that refer to `applications` by name refer to the new one after the rename.
-- Every index on `applications` is made again here: one added by a migration before this one
-- must be added here too.

CREATE TABLE datasets (
    id               TEXT PRIMARY KEY,
    title            TEXT NOT NULL,
    institution      TEXT NOT NULL,
    category         TEXT NOT NULL,
    restricted_until TEXT,
    category_after   TEXT,
    dmp              TEXT NOT NULL,
    state            TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX datasets_by_created ON datasets (created_at, id);
CREATE INDEX datasets_by_institution ON datasets (institution, created_at, id);

CREATE TABLE applications_rebuilt (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    project_id  TEXT REFERENCES projects (id),
    requester   TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL,
    round       BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    dataset_id  TEXT REFERENCES datasets (id),
    CONSTRAINT applications_belong_to_one CHECK ((project_id IS NULL) <> (dataset_id IS NULL))
);
INSERT INTO applications_rebuilt
    (id, kind, project_id, requester, title, description, payload, state, round, created_at, updated_at)
SELECT id, kind, project_id, requester, title, description, payload, state, round, created_at, updated_at
FROM applications;
DROP TABLE applications;
ALTER TABLE applications_rebuilt RENAME TO applications;

CREATE INDEX applications_by_created ON applications (created_at, id);
CREATE INDEX applications_by_project ON applications (project_id, created_at, id);
CREATE INDEX applications_by_state ON applications (state, created_at, id);
CREATE INDEX applications_by_kind_state ON applications (kind, state, created_at, id);
CREATE INDEX applications_by_requester ON applications (requester, created_at, id);
CREATE INDEX applications_by_dataset ON applications (dataset_id, created_at, id);
