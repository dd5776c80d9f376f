-- Blueprints: catalogue entries over a module of the org's registry. `version_constraint` is
-- Terraform's constraint syntax ('' = any). What is derived from the module (input schema,
-- outputs, README) is kept for `module_version`, the version last resolved, and derived again
-- when a newer matching version appears. `description` NULL: the README's first paragraph,
-- kept in `summary`. Deployments refer to blueprints (ON DELETE RESTRICT), so a blueprint
-- with live deployments cannot be deleted.
CREATE TABLE blueprints (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id              INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    module_name         TEXT NOT NULL,
    module_system       TEXT NOT NULL,
    version_constraint  TEXT NOT NULL,
    title               TEXT NOT NULL,
    description         TEXT,
    category            TEXT,
    owner               TEXT,
    tags                TEXT NOT NULL,
    status              TEXT NOT NULL,
    auto_apply          BOOLEAN NOT NULL,
    overrides           TEXT NOT NULL,
    module_version      TEXT NOT NULL,
    derived             TEXT NOT NULL,
    summary             TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    UNIQUE (org_id, name)
);

-- One row per tag, for the list's tag filter.
CREATE TABLE blueprint_tags (
    blueprint_id  INTEGER NOT NULL REFERENCES blueprints(id) ON DELETE CASCADE,
    tag           TEXT NOT NULL,
    PRIMARY KEY (blueprint_id, tag)
);
CREATE INDEX blueprint_tags_tag ON blueprint_tags (tag);
