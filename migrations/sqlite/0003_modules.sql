-- Module registry: one row per namespace/name/system, one per published version.
-- `latest_version_id` is kept current on publish and delete so that listings join one row;
-- `downloads` (here and per version) advance in batches from an in-memory counter, never on
-- the download path.
CREATE TABLE modules (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id             INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    system             TEXT NOT NULL,
    latest_version_id  BIGINT,
    downloads          BIGINT NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (org_id, name, system)
);

-- `version` is canonical semver; `metadata` is the JSON extracted from the archive's HCL.
CREATE TABLE module_versions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    module_id    INTEGER NOT NULL REFERENCES modules(id) ON DELETE CASCADE,
    version      TEXT NOT NULL,
    blob_id      TEXT NOT NULL REFERENCES blobs(id),
    sha256       TEXT NOT NULL,
    size         BIGINT NOT NULL,
    description  TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    downloads    BIGINT NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    UNIQUE (module_id, version)
);
CREATE INDEX module_versions_blob ON module_versions (blob_id);
