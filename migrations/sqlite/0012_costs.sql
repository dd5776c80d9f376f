-- Costs: versioned price catalogues, run-rate estimates (one per state version and per run),
-- imported billing data (FOCUS), budgets and the thresholds they crossed.

-- Each import is a new catalogue version; an org's estimates use its newest ready one, or the
-- sample catalogue built into Terrace when it has none.
CREATE TABLE price_catalogues (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    format       TEXT NOT NULL,
    source       TEXT NOT NULL,
    published    TEXT NULL,
    price_count  BIGINT NOT NULL DEFAULT 0,
    status       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL
);
CREATE INDEX price_catalogues_org ON price_catalogues (org_id, id);

CREATE TABLE prices (
    catalogue_id  BIGINT NOT NULL REFERENCES price_catalogues(id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    service       TEXT NOT NULL,
    region        TEXT NOT NULL,
    attributes    TEXT NOT NULL,
    unit          TEXT NOT NULL,
    price         DOUBLE PRECISION NOT NULL,
    currency      TEXT NOT NULL
);
CREATE INDEX prices_catalogue ON prices (catalogue_id, service, region);

-- Run-rates: one row per state version (the history) and one per planned run.
CREATE TABLE cost_estimates (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id            BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    workspace_id      BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    state_version_id  BIGINT NULL,
    run_id            BIGINT NULL,
    status            TEXT NOT NULL,
    catalogue         TEXT NOT NULL,
    currency          TEXT NOT NULL,
    monthly           DOUBLE PRECISION NOT NULL,
    delta_monthly     DOUBLE PRECISION NULL,
    unpriced          BIGINT NOT NULL,
    detail            TEXT NOT NULL,
    created_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX cost_estimates_version ON cost_estimates (state_version_id);
CREATE UNIQUE INDEX cost_estimates_run ON cost_estimates (run_id);
CREATE INDEX cost_estimates_workspace ON cost_estimates (workspace_id, created_at);

-- The ids and ARNs recorded in each workspace's current state, for attributing billing lines.
CREATE TABLE cost_resource_ids (
    org_id        BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    workspace_id  BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    resource_id   TEXT NOT NULL,
    PRIMARY KEY (org_id, resource_id, workspace_id)
);
CREATE INDEX cost_resource_ids_workspace ON cost_resource_ids (workspace_id);

CREATE TABLE cost_imports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    filename    TEXT NOT NULL,
    status      TEXT NOT NULL,
    lines       BIGINT NOT NULL DEFAULT 0,
    error       TEXT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL
);
CREATE INDEX cost_imports_org ON cost_imports (org_id, id);

-- Billing lines summed per period, source, resource, service and tags.
CREATE TABLE cost_lines (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    import_id       BIGINT NOT NULL REFERENCES cost_imports(id) ON DELETE CASCADE,
    source          TEXT NOT NULL,
    period          TEXT NOT NULL,
    workspace_id    BIGINT NULL,
    attribution     TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    service         TEXT NOT NULL,
    tags            TEXT NOT NULL,
    currency        TEXT NOT NULL,
    effective_cost  DOUBLE PRECISION NOT NULL,
    billed_cost     DOUBLE PRECISION NOT NULL,
    list_cost       DOUBLE PRECISION NOT NULL,
    last_day        BIGINT NOT NULL,
    line_count      BIGINT NOT NULL
);
CREATE INDEX cost_lines_import ON cost_lines (import_id, period);

-- Which import is current for each billing period and source: a re-import replaces.
CREATE TABLE cost_periods (
    org_id     BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    source     TEXT NOT NULL,
    period     TEXT NOT NULL,
    import_id  BIGINT NOT NULL,
    PRIMARY KEY (org_id, source, period)
);

-- Per-workspace cost settings: region and usage amounts.
CREATE TABLE cost_workspace_settings (
    workspace_id  BIGINT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    settings      TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE budgets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    amount      DOUBLE PRECISION NOT NULL,
    currency    TEXT NOT NULL,
    period      TEXT NOT NULL,
    thresholds  TEXT NOT NULL,
    basis       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    UNIQUE (org_id, name)
);

-- Every threshold a budget crossed, once per period: the record of `budget:threshold` events.
CREATE TABLE budget_alerts (
    budget_id  BIGINT NOT NULL REFERENCES budgets(id) ON DELETE CASCADE,
    period     TEXT NOT NULL,
    threshold  DOUBLE PRECISION NOT NULL,
    spend      DOUBLE PRECISION NOT NULL,
    ratio      DOUBLE PRECISION NOT NULL,
    fired_at   TEXT NOT NULL,
    PRIMARY KEY (budget_id, period, threshold)
);
