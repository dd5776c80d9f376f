-- Provider registry and network mirror.

-- Public keys a namespace signs provider releases with. Only RSA keys are accepted (Terraform
-- before 1.6 cannot read EdDSA/ECDSA keys). `source` is 'uploaded' or 'terrace' (the key of
-- the namespace's server-side signing key).
CREATE TABLE gpg_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    key_id       TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    ascii_armor  TEXT NOT NULL,
    source       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    UNIQUE (org_id, key_id)
);

-- The namespace's server-side signing key, generated on first use; the secret key is an
-- encrypted blob.
CREATE TABLE registry_signing_keys (
    org_id      INTEGER PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    key_id      TEXT NOT NULL,
    blob_id     TEXT NOT NULL REFERENCES blobs(id),
    created_at  TEXT NOT NULL
);

CREATE TABLE providers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (org_id, name)
);

-- `protocols` is a comma-separated list such as "5.0". `signed_by` is the key ID whose
-- signature is served with the version.
CREATE TABLE provider_versions (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id        INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    version            TEXT NOT NULL,
    protocols          TEXT NOT NULL,
    shasums_blob_id    TEXT NOT NULL REFERENCES blobs(id),
    signature_blob_id  TEXT NOT NULL REFERENCES blobs(id),
    signed_by          TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    UNIQUE (provider_id, version)
);

-- One zip per platform. `downloads` is advanced in batches from an in-memory counter, never
-- on the download path.
CREATE TABLE provider_packages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    version_id  INTEGER NOT NULL REFERENCES provider_versions(id) ON DELETE CASCADE,
    os          TEXT NOT NULL,
    arch        TEXT NOT NULL,
    filename    TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    h1          TEXT NOT NULL,
    size        BIGINT NOT NULL,
    blob_id     TEXT NOT NULL REFERENCES blobs(id),
    downloads   BIGINT NOT NULL DEFAULT 0,
    UNIQUE (version_id, os, arch)
);

-- Provider archives of other registries (registry.terraform.io/hashicorp/null …) served
-- through the network mirror protocol.
CREATE TABLE mirror_packages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hostname    TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    os          TEXT NOT NULL,
    arch        TEXT NOT NULL,
    filename    TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    h1          TEXT NOT NULL,
    size        BIGINT NOT NULL,
    blob_id     TEXT NOT NULL REFERENCES blobs(id),
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    UNIQUE (hostname, namespace, name, version, os, arch)
);
