-- Organisations own workspaces and tokens.
CREATE TABLE orgs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

-- Opaque API tokens: only the SHA-256 of the secret is kept.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id        INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    token_hash    BLOB NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    expires_at    TEXT,
    revoked_at    TEXT
);
CREATE INDEX api_tokens_org ON api_tokens (org_id, id);

-- Every encrypted object in the blob store; the wrapped data key lives here so that
-- key rotation re-wraps rows instead of rewriting immutable objects.
CREATE TABLE blobs (
    id           TEXT PRIMARY KEY,
    object_key   TEXT NOT NULL UNIQUE,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    wrapped_key  BLOB NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX blobs_key_id ON blobs (key_id);

CREATE TABLE workspaces (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id              INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    lineage_protection  BOOLEAN NOT NULL DEFAULT TRUE,
    current_version_id  BIGINT,
    version_count       BIGINT NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE state_versions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    version       BIGINT NOT NULL,
    serial        BIGINT,
    lineage       TEXT,
    sha256        TEXT NOT NULL,
    size          BIGINT NOT NULL,
    blob_id       TEXT NOT NULL REFERENCES blobs(id),
    source        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    UNIQUE (workspace_id, version)
);
CREATE INDEX state_versions_serial ON state_versions (workspace_id, serial);

-- One row per held lock; `info` is the exact JSON the holder sent.
CREATE TABLE state_locks (
    workspace_id  INTEGER PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    lock_id       TEXT NOT NULL,
    info          BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL
);

-- Background work (sweeps, runs) is queued here and leased by workers.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    run_after    TEXT NOT NULL,
    leased_until TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_after);
