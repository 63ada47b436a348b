-- Sign-ins through the identity provider that were used. Same SQL on both engines.

-- A sign-in under way is kept by the browser (a cookie the gateway authenticates), not here:
-- starting one writes nothing. Once the provider has accepted its code and its ID token has
-- verified, the SHA-256 of its `state` is recorded, so that the same return is refused after:
-- the key's uniqueness is the final word. Rows end at `expires_at` (Unix seconds), when the
-- cookie does, and are removed as others are added.
CREATE TABLE web_sign_ins (
    state_sha256 TEXT PRIMARY KEY,
    used_at      TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX web_sign_ins_by_expiry ON web_sign_ins (expires_at);
