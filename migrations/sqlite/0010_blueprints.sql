-- Placeholder for the blueprints catalogue; replaced by the blueprints feature's migration.
CREATE TABLE blueprints (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id  BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    UNIQUE (org_id, name)
);
