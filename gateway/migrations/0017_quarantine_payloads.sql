-- Quarantine as the release's payload: a round's files are written, as they are copied out of
-- the sandbox, into one file that is already the body of its release (tar, zstd, age's payload
-- under a key of the round's own), so that an approval makes a few KiB durable, not the files
-- again. Rounds quarantined before this keep their files as blobs (payload is NULL).

-- The round's payload file (its name in the quarantine folder), its keys sealed under the
-- gateway's quarantine key, how many whole chunks the file holds, and the chunk after them
-- (sealed, not final), which the release's metadata continues.
ALTER TABLE egress_rounds ADD COLUMN payload TEXT;
ALTER TABLE egress_rounds ADD COLUMN sealed_keys TEXT;
ALTER TABLE egress_rounds ADD COLUMN full_chunks BIGINT;
ALTER TABLE egress_rounds ADD COLUMN seed TEXT;
-- The age header for the recipient the requester had registered at the request (sealed), and
-- the package's SHA-256 begun over it, the nonce and the whole chunks: a release approved for
-- that recipient ends the digest with its tail instead of hashing the chunks again.
ALTER TABLE egress_rounds ADD COLUMN header_recipient TEXT;
ALTER TABLE egress_rounds ADD COLUMN sealed_header TEXT;
ALTER TABLE egress_rounds ADD COLUMN package_hash TEXT;

-- Where a file is in its round's payload: the offset of the zstd frame its tar entry begins
-- in, and how many bytes of tar come before its data from there. A file in a payload is not a
-- blob, so its SHA-256 no longer refers to one.
ALTER TABLE egress_files ADD COLUMN frame_offset BIGINT;
ALTER TABLE egress_files ADD COLUMN data_skip BIGINT;
ALTER TABLE egress_files DROP CONSTRAINT egress_files_sha256_fkey;
