-- Lists page by keyset, newest first: each filter reads its page off an index in that order.
DROP INDEX applications_by_project;
DROP INDEX applications_by_state;
CREATE INDEX applications_by_created ON applications (created_at, id);
CREATE INDEX applications_by_project ON applications (project_id, created_at, id);
CREATE INDEX applications_by_state ON applications (state, created_at, id);
CREATE INDEX applications_by_kind_state ON applications (kind, state, created_at, id);
CREATE INDEX applications_by_requester ON applications (requester, created_at, id);
