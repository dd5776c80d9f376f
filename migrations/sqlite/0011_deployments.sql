-- Deployments (a blueprint instantiated into a workspace), their runs, the runs' logs, and
-- which run wrote a state version.
CREATE TABLE deployments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id         BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    workspace_id   BIGINT NOT NULL REFERENCES workspaces(id),
    -- NULL once archived, so the blueprint may be deleted.
    blueprint_id   INTEGER NULL REFERENCES blueprints(id) ON DELETE RESTRICT,
    blueprint      TEXT NOT NULL,
    module         TEXT NOT NULL,
    version        TEXT NOT NULL,
    inputs         TEXT NOT NULL,
    sensitive      TEXT NOT NULL,
    secrets_blob   TEXT NULL REFERENCES blobs(id),
    outputs        TEXT NOT NULL,
    auto_apply     BOOLEAN NOT NULL,
    status         TEXT NOT NULL,
    diverged       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX deployments_blueprint ON deployments (blueprint_id);

CREATE TABLE runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id         BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    deployment_id  BIGINT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    workspace_id   BIGINT NOT NULL REFERENCES workspaces(id),
    operation      TEXT NOT NULL,
    status         TEXT NOT NULL,
    reason         TEXT NULL,
    version        TEXT NOT NULL,
    config         TEXT NOT NULL,
    secrets_blob   TEXT NULL REFERENCES blobs(id),
    auto_apply     BOOLEAN NOT NULL,
    job_id         BIGINT NULL,
    lease          TEXT NULL,
    runner         TEXT NULL,
    token_id       BIGINT NULL,
    plan_blob      TEXT NULL REFERENCES blobs(id),
    plan_summary   TEXT NULL,
    has_changes    BOOLEAN NULL,
    confirmed_by   TEXT NULL,
    cancel_requests BIGINT NOT NULL DEFAULT 0,
    log_size       BIGINT NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    started_at     TEXT NULL,
    finished_at    TEXT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX runs_deployment ON runs (deployment_id, id);
CREATE INDEX runs_active ON runs (workspace_id, id) WHERE finished_at IS NULL;

CREATE TABLE run_logs (
    run_id     BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    "offset"   BIGINT NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (run_id, "offset")
);

ALTER TABLE state_versions ADD COLUMN run_id BIGINT NULL;
