-- Whether a sandbox's run output is shown to its analysts (`visible`) or only its size and
-- digest (`hidden`: the output leaves only through an egress request).
ALTER TABLE sandboxes ADD COLUMN logs TEXT NOT NULL DEFAULT 'visible';
