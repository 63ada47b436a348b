-- Sign-ins through the identity provider under way. Same SQL on both engines.

-- One row per sign-in started and not yet come back: `state_sha256` is the SHA-256 of the
-- `state` sent to the provider, `binding_sha256` that of the random value the starting
-- browser holds in a cookie (a callback must come back to the same browser), `verifier` the
-- PKCE code verifier and `nonce` the value the ID token must carry. A callback deletes its
-- row before anything else, so each is used once; rows end at `expires_at` (Unix seconds).
CREATE TABLE web_sign_ins (
    state_sha256   TEXT PRIMARY KEY,
    binding_sha256 TEXT NOT NULL,
    verifier       TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX web_sign_ins_by_expiry ON web_sign_ins (expires_at);
