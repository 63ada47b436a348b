-- Conditions on access: what each approving reviewer set on an access application (a reviewer
-- may only tighten what it asks), and what the strictest of them made of its grants. An
-- extension moves `datasets.restricted_until`, and the category job moves a dataset to its
-- `category_after` once that day has passed; both are in the audit log. Same SQL on both
-- engines.

CREATE TABLE access_conditions (
    application_id TEXT NOT NULL REFERENCES applications (id),
    round          BIGINT NOT NULL,
    reviewer       TEXT NOT NULL,
    -- The last day of access this reviewer allows (YYYY-MM-DD, UTC); none: as asked.
    until_date     TEXT,
    -- 1 when this reviewer allows no commercial use.
    no_commercial  BIGINT NOT NULL,
    -- 1 when this reviewer hides run output from the analysts.
    logs_hidden    BIGINT NOT NULL,
    PRIMARY KEY (application_id, round, reviewer)
);

-- 1 when runs of sandboxes mounting the dataset hide their output from the analysts.
ALTER TABLE access_grants ADD COLUMN logs_hidden BIGINT NOT NULL DEFAULT 0;
CREATE INDEX access_grants_of_dataset ON access_grants (dataset_id, granted_at);
-- The category job's look for datasets whose restricted sharing ended.
CREATE INDEX datasets_by_restricted_until ON datasets (restricted_until, id);
