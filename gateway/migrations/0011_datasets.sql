-- Datasets as records, each with its DMP, and applications that belong to a dataset (listing,
-- extension) rather than to a project. Exactly one of `project_id` and `dataset_id` is set.
--
-- SQLite cannot drop a NOT NULL in place: it runs migrations/sqlite/0011_datasets.sql instead,
-- which rebuilds `applications` to the same shape (db.rs). Keep the two in step.

CREATE TABLE datasets (
    id               TEXT PRIMARY KEY,
    title            TEXT NOT NULL,
    -- The data-providing institution's identifier (its stewards' `institution` claim).
    institution      TEXT NOT NULL,
    -- AMED management category now; the restricted-sharing end and the category after it.
    category         TEXT NOT NULL,
    restricted_until TEXT,
    category_after   TEXT,
    -- The checked DMP, as our own JSON.
    dmp              TEXT NOT NULL,
    -- registered (listing applied for), listed (content in the STORE), ...
    state            TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX datasets_by_created ON datasets (created_at, id);
CREATE INDEX datasets_by_institution ON datasets (institution, created_at, id);

ALTER TABLE applications ALTER COLUMN project_id DROP NOT NULL;
ALTER TABLE applications ADD COLUMN dataset_id TEXT REFERENCES datasets (id);
ALTER TABLE applications ADD CONSTRAINT applications_belong_to_one
    CHECK ((project_id IS NULL) <> (dataset_id IS NULL));
CREATE INDEX applications_by_dataset ON applications (dataset_id, created_at, id);
