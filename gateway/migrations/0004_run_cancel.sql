-- Who asked for a run to be cancelled (its supervisor, in whichever gateway, stops it).
ALTER TABLE runs ADD COLUMN cancelled_by TEXT;
