-- A project's command policy: `approved` (only reviewed programs and the commands the operator
-- allowed for the image) or `any`.
ALTER TABLE projects ADD COLUMN commands TEXT NOT NULL DEFAULT 'approved';
-- What the operator allowed for an image: command and interpreter names, as JSON arrays.
ALTER TABLE images ADD COLUMN commands TEXT NOT NULL DEFAULT '[]';
ALTER TABLE images ADD COLUMN interpreters TEXT NOT NULL DEFAULT '[]';
