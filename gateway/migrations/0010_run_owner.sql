-- Runs owned by one gateway at a time (several gateways may share the database). `owner` is
-- the instance id of the gateway that supervises the run, `lease_expires` (a timestamp as the
-- gateway stores them) how long that holds unless renewed: the owner renews it while its
-- supervisor lives, and another gateway takes the run over only once it has lapsed. Every
-- change of a run's state is a compare-and-set on its expected state and owner. Runs from
-- before this have neither, which counts as lapsed.
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN lease_expires TEXT;
CREATE INDEX runs_by_lease ON runs (state, lease_expires);

-- The gateways on this database, each with a lease it renews while it lives: a gateway does
-- not adopt a container another live one made.
CREATE TABLE gateways (
    instance      TEXT PRIMARY KEY,
    started_at    TEXT NOT NULL,
    lease_expires TEXT NOT NULL
);
