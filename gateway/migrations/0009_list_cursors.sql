-- Every list pages by cursor (keyset), each read off an index in its order: projects by id and
-- images by name (their primary keys), sandboxes and runs oldest first by (created_at, id), the
-- audit log by seq (its primary key), of one subject by (subject, seq).
DROP INDEX sandboxes_by_project;
CREATE INDEX sandboxes_by_created ON sandboxes (created_at, id);
CREATE INDEX sandboxes_by_project ON sandboxes (project_id, created_at, id);
DROP INDEX runs_by_sandbox;
CREATE INDEX runs_by_sandbox ON runs (sandbox_id, created_at, id);
CREATE INDEX audit_events_by_subject ON audit_events (subject, seq);
