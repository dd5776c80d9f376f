-- People. A user without a password has an open invitation instead.
CREATE TABLE users (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT NOT NULL UNIQUE,
    password_hash      TEXT,
    invite_hash        BLOB UNIQUE,
    invite_expires_at  TEXT,
    disabled_at        TEXT,
    created_at         TEXT NOT NULL
);

-- A user's role in an org; a user may belong to several orgs.
CREATE TABLE org_members (
    org_id      INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user ON org_members (user_id);

CREATE TABLE teams (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    role        TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id  INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

-- Custom policies: JSON statements, attached to exactly one team, user or token each.
CREATE TABLE policies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    document    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE policy_attachments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id  INTEGER NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    team_id    INTEGER REFERENCES teams(id) ON DELETE CASCADE,
    user_id    INTEGER REFERENCES users(id) ON DELETE CASCADE,
    token_id   INTEGER REFERENCES api_tokens(id) ON DELETE CASCADE,
    CHECK ((team_id IS NOT NULL) + (user_id IS NOT NULL) + (token_id IS NOT NULL) = 1)
);
CREATE UNIQUE INDEX policy_attachments_unique
    ON policy_attachments (policy_id, COALESCE(team_id, 0), COALESCE(user_id, 0), COALESCE(token_id, 0));
CREATE INDEX policy_attachments_team ON policy_attachments (team_id);
CREATE INDEX policy_attachments_user ON policy_attachments (user_id);
CREATE INDEX policy_attachments_token ON policy_attachments (token_id);

-- API tokens may act for a team and be limited to resource globs (JSON array).
ALTER TABLE api_tokens ADD COLUMN team_id INTEGER REFERENCES teams(id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD COLUMN scopes TEXT;

-- Login tokens (JWTs) by id, so each can be listed and revoked.
CREATE TABLE user_tokens (
    jti         TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX user_tokens_user ON user_tokens (user_id, created_at);

-- JWT signing keys: the secret is derived from the master key named here and the kid,
-- so nothing secret is stored.
CREATE TABLE login_keys (
    kid            TEXT PRIMARY KEY,
    master_key_id  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    retired_at     TEXT
);

-- OAuth authorization codes (hashed), single use, bound to client, redirect URI and PKCE.
CREATE TABLE oauth_codes (
    code_hash       BLOB PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    used_at         TEXT,
    token_jti       TEXT
);

-- Append-only trail of every mutation and state read.
CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       INTEGER,
    occurred_at  TEXT NOT NULL,
    actor        TEXT NOT NULL,
    token_id     TEXT,
    action       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    status       INTEGER NOT NULL,
    source       TEXT,
    request_id   TEXT
);
CREATE INDEX audit_events_org ON audit_events (org_id, id);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
