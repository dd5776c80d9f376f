//! The authorization matrix: every route × every kind of caller → the status design.md's
//! "Auth" rules prescribe (no token 401; an invalid credential 401; a valid one lacking the
//! permission 403; an org the caller cannot see 404), and nothing of acme's data in any answer
//! to a caller who may not see it.
//!
//! One app per database: acme gets a workspace with state versions, a held lock, a published
//! module, a published provider, a mirrored provider, users, a team and a policy; then every
//! row of the table is sent as every caller. Mismatches are collected and reported together.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use terrace::identity::auth::jwt::Claims;
use terrace::identity::auth::{Principal, Role};
use terrace::identity::orgs::TokenSpec;
use terrace::infra::db::Db;
use terrace::names::{OrgName, UserName};

use crate::provider_registry::{
    BOUNDARY, Release, SIGNING_KEY_ID, SUBKEY_PRIMARY_ID, SUBKEY_PUBLIC, multipart_body,
};
use crate::support::{ORG, OTHER_ORG, RequestBuilder, Resp, TestApp, create_token, lock_info};

on_both_databases! {
    every_route_answers_every_caller_as_the_design_says,
}

/// Links and discovery are built from the request's host.
const HOST: &str = "terrace.test";
const PASSWORD: &str = "correct-horse-battery";
const LINEAGE: &str = "matrix-lineage-7c1e";
/// In the resources of acme's state: only full readers may ever see it.
const RESOURCE_SECRET: &str = "acme-db-password-0xC0FFEE";
/// In the outputs of acme's state: outputs-only callers see it, strangers never.
const OUTPUT_MARKER: &str = "acme-endpoint-7f3a";
/// The lock a write token holds on `ledger-held` throughout.
const HELD_LOCK: &str = "held-lock-1";
/// The lock ID the LOCK/UNLOCK rows use on `ledger-locks`.
const MATRIX_LOCK: &str = "matrix-lock";
/// A login token id nobody has (for callers without a user behind them).
const NO_SUCH_TOKEN: &str = "00000000-0000-4000-8000-000000000000";
const POLICY_DOC: &str = r#"{"statements":[{"effect":"allow","actions":["state:read"],"resources":["workspace:nothing-*"]}]}"#;

/// Strings that only acme's data contains. Every workspace of acme is named `ledger-…`.
const ACME_MARKERS: &[&str] = &[
    "ledger-",
    RESOURCE_SECRET,
    OUTPUT_MARKER,
    LINEAGE,
    "skynet",
    "terraform-provider-dummy",
    SIGNING_KEY_ID,
    "carol-acme",
    "rhea-acme",
    "wanda-acme",
    "ada-acme",
    "platform-acme",
    "readers-acme",
    "alice@laptop",
];

/// Strings that only the other org's data contains.
const OTHER_MARKERS: &[&str] = &[
    "other-vault-ws",
    "OTHER-ORG-SECRET-42",
    "othermod",
    "olga-other",
];

/// Who is calling, as a column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// No `Authorization` header.
    Anonymous = 0,
    /// A credential that must not authenticate (malformed, forged, expired, revoked, disabled).
    Invalid = 1,
    Outputs = 2,
    Read = 3,
    Plan = 4,
    Write = 5,
    Admin = 6,
    /// An admin token of the other org.
    OtherOrg = 7,
}

struct Caller {
    label: &'static str,
    kind: Kind,
    secret: Option<String>,
    /// The user behind a valid login token: (id, name).
    user: Option<(i64, String)>,
}

/// What a row's request carries.
#[derive(Clone, Copy, Debug)]
enum Payload {
    Empty,
    /// JSON; `{x}` is replaced by the row's prepared value.
    Json(&'static str),
    /// A new state of acme's lineage with the next serial.
    State,
    /// Terraform's lock info for [`MATRIX_LOCK`].
    Lock,
    /// A module `.tar.gz` for version `{x}`.
    Module,
    /// A signed provider release of version `{x}`, multipart.
    Provider,
    /// The registered-for-rows GPG key (`SUBKEY_PUBLIC`).
    GpgKey,
    /// The same archive the mirror already holds.
    MirrorZip,
}

/// Done (as acme's admin) before each request of a row, so that every caller finds the same
/// situation; the returned value replaces `{x}` in the path and payload.
#[derive(Clone, Copy, Debug)]
enum Prep {
    None,
    /// A name never used before.
    Fresh,
    /// A version never published before.
    Version,
    /// `ledger-held` is locked by [`HELD_LOCK`].
    HeldLock,
    /// A new API token of acme; its id.
    ApiToken,
    /// A new login token of carol; its id.
    CarolToken,
    /// A new login token of the calling user; its id ([`NO_SUCH_TOKEN`] for non-users).
    OwnToken,
    /// A new team; its name.
    Team,
    /// A new policy; its name.
    Policy,
    /// A new attachment of `readers-acme` to a new team; its id.
    Attachment,
    /// A new member of acme; their name.
    Member,
    /// carol is in `platform-acme`.
    TeamMember,
    /// A newly published version of `skynet/aws`.
    ModuleVersion,
    /// `SUBKEY_PUBLIC` is not registered.
    GpgKeyAbsent,
    /// `SUBKEY_PUBLIC` is registered; its key id.
    GpgKeyPresent,
    /// A signed download link of acme's module.
    Link,
    /// The same link with a wrong signature.
    TamperedLink,
}

struct Row {
    method: &'static str,
    path: &'static str,
    /// Expected status per caller kind: anon, invalid, outputs, read, plan, write, admin, other.
    expect: [u16; 8],
    /// Routes about the calling user: what users with the read, write and admin roles get
    /// (`expect` then holds what API tokens get).
    users: Option<[u16; 3]>,
    payload: Payload,
    prep: Prep,
    /// The answer is meant for whoever holds the URL (signed links, public namespaces):
    /// no check for acme's data in it.
    open: bool,
}

fn row(method: &'static str, path: &'static str, expect: [u16; 8]) -> Row {
    Row {
        method,
        path,
        expect,
        users: None,
        payload: Payload::Empty,
        prep: Prep::None,
        open: false,
    }
}

impl Row {
    fn with(mut self, payload: Payload) -> Row {
        self.payload = payload;
        self
    }

    fn prep(mut self, prep: Prep) -> Row {
        self.prep = prep;
        self
    }

    fn users(mut self, users: [u16; 3]) -> Row {
        self.users = Some(users);
        self
    }

    fn open(mut self) -> Row {
        self.open = true;
        self
    }

    fn expected(&self, caller: &Caller) -> u16 {
        if let (Some(users), Some(_)) = (self.users, &caller.user) {
            match caller.kind {
                Kind::Read => return users[0],
                Kind::Write => return users[1],
                Kind::Admin => return users[2],
                _ => {}
            }
        }
        self.expect[caller.kind as usize]
    }
}

/// Every route of the router that takes a token, plus the ones that must ignore tokens.
#[rustfmt::skip]
fn matrix() -> Vec<Row> {
    vec![
        // ── No credentials needed, none looked at ──────────────────────────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/.well-known/terraform.json",                     [200, 200, 200, 200, 200, 200, 200, 200]),
        row("GET",    "/healthz",                                        [200, 200, 200, 200, 200, 200, 200, 200]),
        row("GET",    "/readyz",                                         [200, 200, 200, 200, 200, 200, 200, 200]),
        row("GET",    "/metrics",                                        [200, 200, 200, 200, 200, 200, 200, 200]),
        row("GET",    "{x}",                                             [200, 200, 200, 200, 200, 200, 200, 200]).prep(Prep::Link).open(),
        row("GET",    "{x}",                                             [404, 404, 404, 404, 404, 404, 404, 404]).prep(Prep::TamperedLink),

        // ── Terraform's http backend (Basic auth) ──────────────────────────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/state/acme/ledger-prod",                         [401, 401, 200, 200, 200, 200, 200, 404]),
        row("HEAD",   "/state/acme/ledger-prod",                         [401, 401, 200, 200, 200, 200, 200, 404]),
        row("POST",   "/state/acme/ledger-prod",                         [401, 401, 403, 403, 403, 200, 200, 404]).with(Payload::State),
        row("PUT",    "/state/acme/ledger-prod",                         [401, 401, 403, 403, 403, 200, 200, 404]).with(Payload::State),
        row("LOCK",   "/state/acme/ledger-locks",                        [401, 401, 403, 403, 200, 200, 200, 404]).with(Payload::Lock),
        row("POST",   "/state/acme/ledger-locks/lock",                   [401, 401, 403, 403, 200, 200, 200, 404]).with(Payload::Lock),
        row("UNLOCK", "/state/acme/ledger-locks",                        [401, 401, 403, 403, 200, 200, 200, 404]).with(Payload::Lock),
        row("DELETE", "/state/acme/ledger-locks/lock",                   [401, 401, 403, 403, 200, 200, 200, 404]).with(Payload::Lock),
        row("DELETE", "/state/acme/ledger-scratch",                      [401, 401, 403, 403, 403, 403, 200, 404]),

        // ── What does not exist looks like what the caller may not see ────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/state/ghost-org/ledger-ghost",                   [401, 401, 404, 404, 404, 404, 404, 404]),
        row("POST",   "/state/ghost-org/ledger-ghost",                   [401, 401, 404, 404, 404, 404, 404, 404]).with(Payload::State),
        row("GET",    "/api/v1/orgs/ghost-org/workspaces",               [401, 401, 404, 404, 404, 404, 404, 404]),
        row("GET",    "/api/v1/orgs/ghost-org/tokens",                   [401, 401, 404, 404, 404, 404, 404, 404]),
        row("GET",    "/api/v1/orgs/ghost-org/registry",                 [401, 401, 404, 404, 404, 404, 404, 404]),
        row("GET",    "/v1/modules/ghost-org/skynet/aws/versions",       [401, 401, 404, 404, 404, 404, 404, 404]),
        row("GET",    "/v1/providers/ghost-org/dummy/versions",          [401, 401, 404, 404, 404, 404, 404, 404]),
        row("GET",    "/state/acme/ledger-ghost",                        [401, 401, 404, 404, 404, 404, 404, 404]),
        row("GET",    "/api/v1/orgs/acme/workspaces/ledger-ghost",       [401, 401, 403, 404, 404, 404, 404, 404]),

        // ── Workspaces and state versions ──────────────────────────────────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/api/v1/orgs/acme/workspaces",                    [401, 401, 403, 200, 200, 200, 200, 404]),
        row("GET",    "/api/v1/orgs/acme/workspaces/ledger-prod",        [401, 401, 403, 200, 200, 200, 200, 404]),
        row("PATCH",  "/api/v1/orgs/acme/workspaces/ledger-prod",        [401, 401, 403, 403, 403, 403, 200, 404]).with(Payload::Json(r#"{"lineage_protection":true}"#)),
        row("GET",    "/api/v1/orgs/acme/workspaces/ledger-prod/state-versions",            [401, 401, 403, 200, 200, 200, 200, 404]),
        row("POST",   "/api/v1/orgs/acme/workspaces/ledger-prod/state-versions",            [401, 401, 403, 403, 403, 403, 201, 404]).with(Payload::State),
        row("GET",    "/api/v1/orgs/acme/workspaces/ledger-prod/state-versions/1",          [401, 401, 403, 200, 200, 200, 200, 404]),
        row("POST",   "/api/v1/orgs/acme/workspaces/ledger-prod/state-versions/1/rollback", [401, 401, 403, 403, 403, 403, 201, 404]),
        row("GET",    "/api/v1/orgs/acme/workspaces/ledger-held/lock",   [401, 401, 403, 200, 200, 200, 200, 404]).prep(Prep::HeldLock),
        row("DELETE", "/api/v1/orgs/acme/workspaces/ledger-held/lock",   [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::HeldLock),

        // ── API tokens ─────────────────────────────────────────────────────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/api/v1/orgs/acme/tokens",                        [401, 401, 403, 403, 403, 403, 200, 404]),
        row("POST",   "/api/v1/orgs/acme/tokens",                        [401, 401, 403, 403, 403, 403, 201, 404]).with(Payload::Json(r#"{"name":"{x}","role":"read"}"#)).prep(Prep::Fresh),
        row("DELETE", "/api/v1/orgs/acme/tokens/{x}",                    [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::ApiToken),

        // ── Users of the org ───────────────────────────────────────────────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/api/v1/orgs/acme/users",                         [401, 401, 403, 403, 403, 403, 200, 404]),
        row("POST",   "/api/v1/orgs/acme/users",                         [401, 401, 403, 403, 403, 403, 201, 404]).with(Payload::Json(r#"{"name":"{x}","role":"read"}"#)).prep(Prep::Fresh),
        row("GET",    "/api/v1/orgs/acme/users/carol-acme",              [401, 401, 403, 403, 403, 403, 200, 404]),
        row("PATCH",  "/api/v1/orgs/acme/users/carol-acme",              [401, 401, 403, 403, 403, 403, 200, 404]).with(Payload::Json(r#"{"role":"read"}"#)),
        row("PATCH",  "/api/v1/orgs/acme/users/carol-acme",              [401, 401, 403, 403, 403, 403, 200, 404]).with(Payload::Json(r#"{"disabled":false}"#)),
        row("DELETE", "/api/v1/orgs/acme/users/{x}",                     [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::Member),
        row("GET",    "/api/v1/orgs/acme/users/carol-acme/tokens",       [401, 401, 403, 403, 403, 403, 200, 404]),
        row("DELETE", "/api/v1/orgs/acme/users/carol-acme/tokens/{x}",   [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::CarolToken),

        // ── The calling user (login tokens only; API tokens belong to an org: 400) ────────────
        //                                                                anon bad  outp read plan writ admn other     users: read write admin
        row("GET",    "/api/v1/user",                                    [401, 401, 400, 400, 400, 400, 400, 400]).users([200, 200, 200]),
        row("PUT",    "/api/v1/user/password",                           [401, 401, 400, 400, 400, 400, 400, 400]).users([204, 204, 204])
            .with(Payload::Json(r#"{"current_password":"correct-horse-battery","new_password":"correct-horse-battery"}"#)),
        row("GET",    "/api/v1/user/tokens",                             [401, 401, 400, 400, 400, 400, 400, 400]).users([200, 200, 200]),
        row("DELETE", "/api/v1/user/tokens/{x}",                         [401, 401, 400, 400, 400, 400, 400, 400]).users([204, 204, 204]).prep(Prep::OwnToken),

        // ── Teams ──────────────────────────────────────────────────────────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/api/v1/orgs/acme/teams",                         [401, 401, 403, 403, 403, 403, 200, 404]),
        row("POST",   "/api/v1/orgs/acme/teams",                         [401, 401, 403, 403, 403, 403, 201, 404]).with(Payload::Json(r#"{"name":"{x}"}"#)).prep(Prep::Fresh),
        row("GET",    "/api/v1/orgs/acme/teams/platform-acme",           [401, 401, 403, 403, 403, 403, 200, 404]),
        row("PATCH",  "/api/v1/orgs/acme/teams/platform-acme",           [401, 401, 403, 403, 403, 403, 200, 404]).with(Payload::Json(r#"{"role":"read"}"#)),
        row("DELETE", "/api/v1/orgs/acme/teams/{x}",                     [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::Team),
        row("GET",    "/api/v1/orgs/acme/teams/platform-acme/members",   [401, 401, 403, 403, 403, 403, 200, 404]),
        row("PUT",    "/api/v1/orgs/acme/teams/platform-acme/members/carol-acme", [401, 401, 403, 403, 403, 403, 204, 404]),
        row("DELETE", "/api/v1/orgs/acme/teams/platform-acme/members/carol-acme", [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::TeamMember),

        // ── Policies ───────────────────────────────────────────────────────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/api/v1/orgs/acme/policies",                      [401, 401, 403, 403, 403, 403, 200, 404]),
        row("POST",   "/api/v1/orgs/acme/policies",                      [401, 401, 403, 403, 403, 403, 201, 404])
            .with(Payload::Json(r#"{"name":"{x}","document":{"statements":[{"effect":"allow","actions":["state:read"],"resources":["workspace:nothing-*"]}]}}"#)).prep(Prep::Fresh),
        row("GET",    "/api/v1/orgs/acme/policies/readers-acme",         [401, 401, 403, 403, 403, 403, 200, 404]),
        row("PUT",    "/api/v1/orgs/acme/policies/readers-acme",         [401, 401, 403, 403, 403, 403, 200, 404])
            .with(Payload::Json(r#"{"document":{"statements":[{"effect":"allow","actions":["state:read"],"resources":["workspace:nothing-*"]}]}}"#)),
        row("DELETE", "/api/v1/orgs/acme/policies/{x}",                  [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::Policy),
        row("GET",    "/api/v1/orgs/acme/policies/readers-acme/attachments",     [401, 401, 403, 403, 403, 403, 200, 404]),
        row("POST",   "/api/v1/orgs/acme/policies/readers-acme/attachments",     [401, 401, 403, 403, 403, 403, 201, 404]).with(Payload::Json(r#"{"team":"{x}"}"#)).prep(Prep::Team),
        row("DELETE", "/api/v1/orgs/acme/policies/readers-acme/attachments/{x}", [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::Attachment),

        // ── Audit trail ────────────────────────────────────────────────────────────────────────
        row("GET",    "/api/v1/orgs/acme/audit-events",                  [401, 401, 403, 403, 403, 403, 200, 404]),

        // ── Registry namespace settings ────────────────────────────────────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/api/v1/orgs/acme/registry",                      [401, 401, 403, 200, 200, 200, 200, 404]),
        row("PATCH",  "/api/v1/orgs/acme/registry",                      [401, 401, 403, 403, 403, 403, 200, 404]).with(Payload::Json(r#"{"public":false}"#)),

        // ── Module registry (private namespace) ────────────────────────────────────────────────
        // Listings span orgs: everyone gets 200, with only what they may see.
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/v1/modules",                                     [200, 401, 200, 200, 200, 200, 200, 200]),
        row("GET",    "/v1/modules/",                                    [200, 401, 200, 200, 200, 200, 200, 200]),
        row("GET",    "/v1/modules/search?q=sky",                        [200, 401, 200, 200, 200, 200, 200, 200]),
        row("GET",    "/v1/modules/acme",                                [401, 401, 403, 200, 200, 200, 200, 404]),
        row("GET",    "/v1/modules/acme/skynet",                         [401, 401, 403, 200, 200, 200, 200, 404]),
        row("GET",    "/v1/modules/acme/skynet/aws",                     [401, 401, 403, 200, 200, 200, 200, 404]),
        row("GET",    "/v1/modules/acme/skynet/aws/versions",            [401, 401, 403, 200, 200, 200, 200, 404]),
        row("GET",    "/v1/modules/acme/skynet/aws/download",            [401, 401, 403, 302, 302, 302, 302, 404]),
        row("GET",    "/v1/modules/acme/skynet/aws/1.0.0",               [401, 401, 403, 200, 200, 200, 200, 404]),
        row("GET",    "/v1/modules/acme/skynet/aws/1.0.0/download",      [401, 401, 403, 204, 204, 204, 204, 404]),
        row("PUT",    "/api/v1/modules/acme/skynet/aws/{x}",             [401, 401, 403, 403, 403, 201, 201, 404]).with(Payload::Module).prep(Prep::Version),
        row("DELETE", "/api/v1/modules/acme/skynet/aws/{x}",             [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::ModuleVersion),

        // ── Provider registry and signing keys ─────────────────────────────────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/v1/providers/acme/dummy/versions",               [401, 401, 403, 200, 200, 200, 200, 404]),
        row("GET",    "/v1/providers/acme/dummy/1.0.0/download/linux/amd64", [401, 401, 403, 200, 200, 200, 200, 404]),
        row("POST",   "/api/v1/providers/acme/dummy/{x}",                [401, 401, 403, 403, 403, 201, 201, 404]).with(Payload::Provider).prep(Prep::Version),
        row("GET",    "/api/v1/orgs/acme/gpg-keys",                      [401, 401, 403, 200, 200, 200, 200, 404]),
        row("POST",   "/api/v1/orgs/acme/gpg-keys",                      [401, 401, 403, 403, 403, 403, 201, 404]).with(Payload::GpgKey).prep(Prep::GpgKeyAbsent),
        row("DELETE", "/api/v1/orgs/acme/gpg-keys/{x}",                  [401, 401, 403, 403, 403, 403, 204, 404]).prep(Prep::GpgKeyPresent),

        // ── Provider network mirror (instance-wide; acme is the mirror org) ────────────────────
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/v1/mirror/registry.terraform.io/hashicorp/null/index.json", [401, 401, 200, 200, 200, 200, 200, 200]),
        row("GET",    "/v1/mirror/registry.terraform.io/hashicorp/null/3.1.0.json", [401, 401, 200, 200, 200, 200, 200, 200]),
        row("PUT",    "/api/v1/mirror/registry.terraform.io/hashicorp/null/3.1.0/linux_amd64", [401, 401, 403, 403, 403, 403, 200, 403]).with(Payload::MirrorZip),
        // This server's own providers through the mirror protocol: the namespace's rules.
        row("GET",    "/v1/mirror/terrace.test/acme/dummy/index.json",   [401, 401, 403, 200, 200, 200, 200, 404]),
        row("GET",    "/v1/mirror/terrace.test/acme/dummy/1.0.0.json",   [401, 401, 403, 200, 200, 200, 200, 404]),
    ]
}

/// After acme's registry namespace is made public: registry reads are open to anyone, a bad
/// token is still refused, writes keep their rules, and the state stays private.
#[rustfmt::skip]
fn public_namespace_matrix() -> Vec<Row> {
    vec![
        //                                                                anon bad  outp read plan writ admn other
        row("GET",    "/v1/modules",                                     [200, 401, 200, 200, 200, 200, 200, 200]).open(),
        row("GET",    "/v1/modules/acme",                                [200, 401, 200, 200, 200, 200, 200, 200]).open(),
        row("GET",    "/v1/modules/acme/skynet/aws/versions",            [200, 401, 200, 200, 200, 200, 200, 200]).open(),
        row("GET",    "/v1/modules/acme/skynet/aws/1.0.0/download",      [204, 401, 204, 204, 204, 204, 204, 204]).open(),
        row("GET",    "/v1/providers/acme/dummy/versions",               [200, 401, 200, 200, 200, 200, 200, 200]).open(),
        row("GET",    "/v1/providers/acme/dummy/1.0.0/download/linux/amd64", [200, 401, 200, 200, 200, 200, 200, 200]).open(),
        row("GET",    "/v1/mirror/terrace.test/acme/dummy/index.json",   [200, 401, 200, 200, 200, 200, 200, 200]).open(),
        row("GET",    "/api/v1/orgs/acme/registry",                      [200, 401, 200, 200, 200, 200, 200, 200]).open(),
        row("GET",    "/api/v1/orgs/acme/gpg-keys",                      [200, 401, 200, 200, 200, 200, 200, 200]).open(),
        // Writing stays with acme (another org's admin is refused as for a private namespace).
        row("PUT",    "/api/v1/modules/acme/skynet/aws/{x}",             [401, 401, 403, 403, 403, 201, 201, 404]).with(Payload::Module).prep(Prep::Version),
        row("PATCH",  "/api/v1/orgs/acme/registry",                      [401, 401, 403, 403, 403, 403, 200, 404]).with(Payload::Json(r#"{"public":true}"#)),
        // A public registry opens nothing else.
        row("GET",    "/state/acme/ledger-prod",                         [401, 401, 200, 200, 200, 200, 200, 404]),
        row("GET",    "/api/v1/orgs/acme/workspaces",                    [401, 401, 403, 200, 200, 200, 200, 404]),
    ]
}

/// The app and what the rows need.
struct Ctx {
    app: TestApp,
    counter: AtomicU64,
    carol_id: i64,
    link: String,
    tampered_link: String,
    mirror_zip: Vec<u8>,
}

impl Ctx {
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.app
            .api(method, path, &self.app.admin_token, body)
            .await
    }

    async fn prepare(&self, prep: Prep, caller: &Caller) -> String {
        let n = self.next();
        let app = &self.app;
        match prep {
            Prep::None => String::new(),
            Prep::Fresh => format!("matrix-{n}"),
            Prep::Version => format!("2.0.{n}"),
            Prep::HeldLock => {
                app.lock("ledger-held", HELD_LOCK, &app.write_token)
                    .await
                    .assert_status(StatusCode::OK);
                String::new()
            }
            Prep::ApiToken => {
                let body = json!({ "name": format!("doomed-{n}"), "role": "read" });
                let resp = self
                    .admin("POST", "/api/v1/orgs/acme/tokens", Some(body))
                    .await;
                resp.assert_status(StatusCode::CREATED);
                resp.json()["id"].as_i64().unwrap().to_string()
            }
            Prep::CarolToken => login_token(app, self.carol_id, "carol-acme").await.0,
            Prep::OwnToken => match &caller.user {
                Some((id, name)) => login_token(app, *id, name).await.0,
                None => NO_SUCH_TOKEN.to_string(),
            },
            Prep::Team => {
                let name = format!("team-{n}");
                let body = json!({ "name": name });
                self.admin("POST", "/api/v1/orgs/acme/teams", Some(body))
                    .await
                    .assert_status(StatusCode::CREATED);
                name
            }
            Prep::Policy => {
                let name = format!("policy-{n}");
                let doc: Value = serde_json::from_str(POLICY_DOC).unwrap();
                let body = json!({ "name": name, "document": doc });
                self.admin("POST", "/api/v1/orgs/acme/policies", Some(body))
                    .await
                    .assert_status(StatusCode::CREATED);
                name
            }
            Prep::Attachment => {
                let team = format!("team-{n}");
                self.admin(
                    "POST",
                    "/api/v1/orgs/acme/teams",
                    Some(json!({ "name": team })),
                )
                .await
                .assert_status(StatusCode::CREATED);
                let path = "/api/v1/orgs/acme/policies/readers-acme/attachments";
                let resp = self
                    .admin("POST", path, Some(json!({ "team": team })))
                    .await;
                resp.assert_status(StatusCode::CREATED);
                resp.json()["id"].as_i64().unwrap().to_string()
            }
            Prep::Member => {
                let name = format!("member-{n}");
                let body = json!({ "name": name, "role": "read" });
                self.admin("POST", "/api/v1/orgs/acme/users", Some(body))
                    .await
                    .assert_status(StatusCode::CREATED);
                name
            }
            Prep::TeamMember => {
                let path = "/api/v1/orgs/acme/teams/platform-acme/members/carol-acme";
                self.admin("PUT", path, None)
                    .await
                    .assert_status(StatusCode::NO_CONTENT);
                String::new()
            }
            Prep::ModuleVersion => {
                let version = format!("3.0.{n}");
                crate::module_registry::publish(app, "skynet/aws", &version)
                    .await
                    .assert_status(StatusCode::CREATED);
                version
            }
            Prep::GpgKeyAbsent => {
                let path = format!("/api/v1/orgs/acme/gpg-keys/{SUBKEY_PRIMARY_ID}");
                let resp = self.admin("DELETE", &path, None).await;
                assert!(
                    [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND].contains(&resp.status),
                    "{}",
                    resp.text()
                );
                String::new()
            }
            Prep::GpgKeyPresent => {
                let body = json!({ "ascii_armor": SUBKEY_PUBLIC });
                let resp = self
                    .admin("POST", "/api/v1/orgs/acme/gpg-keys", Some(body))
                    .await;
                assert!(
                    [StatusCode::CREATED, StatusCode::CONFLICT].contains(&resp.status),
                    "{}",
                    resp.text()
                );
                SUBKEY_PRIMARY_ID.to_string()
            }
            Prep::Link => self.link.clone(),
            Prep::TamperedLink => self.tampered_link.clone(),
        }
    }

    /// Sends `row` as `caller`: Basic auth on the http backend (as Terraform sends it), Bearer
    /// everywhere else.
    async fn send(&self, row: &Row, caller: &Caller, x: &str) -> (String, Resp) {
        let path = row.path.replace("{x}", x);
        let mut request = RequestBuilder::new(row.method, &path).header("host", HOST);
        if let Some(secret) = &caller.secret {
            request = if path.starts_with("/state/") {
                request.basic(secret)
            } else {
                request.bearer(secret)
            };
        }
        request = match row.payload {
            Payload::Empty => request,
            Payload::Json(template) => request
                .header("content-type", "application/json")
                .body(template.replace("{x}", x)),
            Payload::State => request.body(state_body(self.next() * 1000)),
            Payload::Lock => request.body(lock_info(MATRIX_LOCK)),
            Payload::Module => request.body(module_tarball(x)),
            Payload::Provider => {
                let release = Release::signed(x, &["linux_amd64"]);
                request
                    .header(
                        "content-type",
                        &format!("multipart/form-data; boundary={BOUNDARY}"),
                    )
                    .body(multipart_body(&release.parts()))
            }
            Payload::GpgKey => request
                .header("content-type", "application/json")
                .body(json!({ "ascii_armor": SUBKEY_PUBLIC }).to_string()),
            Payload::MirrorZip => request.body(self.mirror_zip.clone()),
        };
        let resp = self.app.send(request.build()).await;
        (format!("{} {path}", row.method), resp)
    }

    /// Sends every row as every caller and returns the number of requests made.
    async fn run(&self, rows: &[Row], callers: &[Caller], failures: &mut Vec<String>) -> usize {
        let mut sent = 0;
        for row in rows {
            for caller in callers {
                let x = self.prepare(row.prep, caller).await;
                let (what, resp) = self.send(row, caller, &x).await;
                sent += 1;
                check(row, caller, &what, &resp, failures);
            }
        }
        sent
    }
}

/// Compares one answer with the table and the rules every answer follows.
fn check(row: &Row, caller: &Caller, what: &str, resp: &Resp, failures: &mut Vec<String>) {
    let expected = row.expected(caller);
    let got = resp.status.as_u16();
    let mut fail = |problem: String| {
        failures.push(format!(
            "{what} as {}: {problem}; body: {}",
            caller.label,
            excerpt(&resp.text())
        ));
    };
    if got != expected {
        fail(format!("got {got}, expected {expected}"));
    }
    if got == 401 && !resp.headers.contains_key("www-authenticate") {
        fail("401 without a WWW-Authenticate challenge".into());
    }
    // HEAD answers carry no body; 423 carries the lock holder's info, as Terraform expects.
    if got >= 400 && got != 423 && row.method != "HEAD" {
        let errors = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v.get("errors").map(Value::is_array));
        if errors != Some(true) {
            fail(format!("{got} without a JSON {{\"errors\": [...]}} body"));
        }
    }
    if row.open {
        return;
    }
    let forbidden: Vec<&str> = match caller.kind {
        Kind::Anonymous | Kind::Invalid | Kind::OtherOrg => ACME_MARKERS.to_vec(),
        // Outputs-only callers may see the outputs, nothing else of acme.
        Kind::Outputs => ACME_MARKERS
            .iter()
            .copied()
            .filter(|m| *m != OUTPUT_MARKER && *m != LINEAGE)
            .collect(),
        _ => Vec::new(),
    };
    let text = resp.text();
    for marker in forbidden {
        if text.contains(marker) {
            fail(format!("the answer contains acme's {marker:?}"));
        }
    }
}

fn excerpt(text: &str) -> String {
    let text: String = text.chars().take(160).collect();
    text.replace('\n', " ")
}

/// A state of acme's lineage: outputs and a resource holding a secret.
fn state_body(serial: u64) -> String {
    json!({
        "version": 4,
        "terraform_version": "1.0.3",
        "serial": serial,
        "lineage": LINEAGE,
        "outputs": { "endpoint": { "value": OUTPUT_MARKER, "type": "string" } },
        "resources": [{
            "mode": "managed",
            "type": "aws_db_instance",
            "name": "main",
            "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
            "instances": [{ "schema_version": 0, "attributes": { "password": RESOURCE_SECRET } }],
        }],
    })
    .to_string()
}

/// A minimal module archive.
fn module_tarball(version: &str) -> Vec<u8> {
    let main = format!("output \"version\" {{\n  value = \"{version}\"\n}}\n");
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(main.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "main.tf", main.as_bytes())
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

/// Adds `name` to `org` with `role` and a password; returns the user's id.
async fn add_user(app: &TestApp, org: &str, name: &str, role: Role) -> i64 {
    let org = OrgName::parse(org).unwrap();
    let user = UserName::parse(name).unwrap();
    terrace::identity::users::add_member(
        app.db(),
        &Principal::System,
        &org,
        &user,
        role,
        Some(PASSWORD),
        "http://localhost",
    )
    .await
    .unwrap();
    terrace::identity::users::store::find_user(app.db(), name)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A new login token of a user: (id, JWT).
async fn login_token(app: &TestApp, user_id: i64, name: &str) -> (String, String) {
    terrace::identity::users::issue_login_token_with_id(
        &app.state.identity,
        user_id,
        name,
        "matrix",
        chrono::Duration::days(1),
    )
    .await
    .unwrap()
}

/// The current login signing key: (kid, master key id), from `login_keys`.
async fn current_login_key(db: &Db) -> (String, String) {
    const SQL: &str = "SELECT kid, master_key_id FROM login_keys WHERE retired_at IS NULL \
                       ORDER BY created_at DESC, kid";
    match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_one(pool).await.unwrap(),
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_one(pool).await.unwrap(),
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` with HS256 under `kid`.
fn sign_jwt(kid: &str, claims: &Claims, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn caller(label: &'static str, kind: Kind, secret: impl Into<String>) -> Caller {
    Caller {
        label,
        kind,
        secret: Some(secret.into()),
        user: None,
    }
}

/// Every column of the table, set up on `app`.
async fn callers(app: &TestApp) -> Vec<Caller> {
    let db = app.db();
    let acme = OrgName::parse(ORG).unwrap();

    // Users with each role, and one of each kind that must be refused.
    let rhea = add_user(app, ORG, "rhea-acme", Role::Read).await;
    let wanda = add_user(app, ORG, "wanda-acme", Role::Write).await;
    let ada = add_user(app, ORG, "ada-acme", Role::Admin).await;
    let rita = add_user(app, ORG, "rita-acme", Role::Admin).await;
    let dave = add_user(app, ORG, "dave-acme", Role::Admin).await;
    let (_, rhea_token) = login_token(app, rhea, "rhea-acme").await;
    let (_, wanda_token) = login_token(app, wanda, "wanda-acme").await;
    let (ada_jti, ada_token) = login_token(app, ada, "ada-acme").await;

    // Revoked through the API, by its own holder.
    let (rita_jti, rita_token) = login_token(app, rita, "rita-acme").await;
    app.api(
        "DELETE",
        &format!("/api/v1/user/tokens/{rita_jti}"),
        &rita_token,
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);

    // Disabled by an admin of every org they belong to.
    let (_, dave_token) = login_token(app, dave, "dave-acme").await;
    app.api(
        "PATCH",
        "/api/v1/orgs/acme/users/dave-acme",
        &app.admin_token,
        Some(json!({ "disabled": true })),
    )
    .await
    .assert_status(StatusCode::OK);

    // JWTs forged with the real key (when it matters) for ada's live session.
    let (kid, master_key_id) = current_login_key(db).await;
    let header_kid = jsonwebtoken::decode_header(&ada_token).unwrap().kid;
    assert_eq!(
        header_kid.as_deref(),
        Some(kid.as_str()),
        "login tokens carry the current kid"
    );
    let secret = app
        .state
        .blobs
        .keys()
        .derive_secret(&master_key_id, kid.as_bytes())
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = |audience: &str, exp: i64| Claims {
        iss: "terrace".into(),
        aud: audience.into(),
        sub: ada.to_string(),
        name: "ada-acme".into(),
        jti: ada_jti.clone(),
        iat: now - 120,
        exp,
    };
    let api = terrace::identity::auth::jwt::API_AUDIENCE;
    // The recipe is right: the same token with a future expiry is accepted.
    let forged_valid = sign_jwt(&kid, &claims(api, now + 3600), &secret);
    app.api("GET", "/api/v1/user", &forged_valid, None)
        .await
        .assert_status(StatusCode::OK);
    let expired = sign_jwt(&kid, &claims(api, now - 60), &secret);
    let foreign_key = sign_jwt(&kid, &claims(api, now + 3600), &rand::random::<[u8; 32]>());
    let unknown_kid = sign_jwt(
        "0123456789abcdef01234567",
        &claims(api, now + 3600),
        &secret,
    );
    let browser_audience = sign_jwt(
        &kid,
        &claims(terrace::identity::auth::jwt::BROWSER_AUDIENCE, now + 3600),
        &secret,
    );
    let alg_none = format!(
        "{}.{}.",
        b64url(
            json!({ "alg": "none", "typ": "JWT", "kid": kid })
                .to_string()
                .as_bytes()
        ),
        b64url(&serde_json::to_vec(&claims(api, now + 3600)).unwrap())
    );

    // API tokens: the fixture's, plus plan, outputs, expired and revoked ones.
    let plan_token = create_token(db, ORG, "planner", Role::Plan, None).await;
    let outputs_token = create_token(db, ORG, "consumer", Role::Outputs, None).await;
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    let expired_api = create_token(db, ORG, "expired", Role::Admin, Some(past)).await;
    let revoked = terrace::identity::orgs::create_token(
        db,
        &Principal::System,
        &acme,
        TokenSpec::new("revoked", Role::Admin),
    )
    .await
    .unwrap();
    app.api(
        "DELETE",
        &format!("/api/v1/orgs/acme/tokens/{}", revoked.id),
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);

    let not_a_jwt = format!(
        "{}.{}.{}",
        b64url(&rand::random::<[u8; 12]>()),
        b64url(&rand::random::<[u8; 24]>()),
        b64url(&rand::random::<[u8; 32]>())
    );
    let user = |label, kind, token: &str, id: i64, name: &str| Caller {
        label,
        kind,
        secret: Some(token.to_string()),
        user: Some((id, name.to_string())),
    };
    vec![
        Caller {
            label: "no token",
            kind: Kind::Anonymous,
            secret: None,
            user: None,
        },
        caller("malformed trc_ token", Kind::Invalid, "trc_nonsense"),
        caller("three-part non-JWT", Kind::Invalid, not_a_jwt),
        caller("expired JWT", Kind::Invalid, expired),
        caller("JWT signed with another key", Kind::Invalid, foreign_key),
        caller("JWT with an unknown kid", Kind::Invalid, unknown_kid),
        caller(
            "JWT for the browser audience",
            Kind::Invalid,
            browser_audience,
        ),
        caller("JWT with alg none", Kind::Invalid, alg_none),
        caller("revoked login token", Kind::Invalid, rita_token),
        caller("disabled user", Kind::Invalid, dave_token),
        caller("expired API token", Kind::Invalid, expired_api),
        caller("revoked API token", Kind::Invalid, revoked.token),
        caller("outputs token", Kind::Outputs, outputs_token),
        caller("read token", Kind::Read, app.read_token.clone()),
        user("read user", Kind::Read, &rhea_token, rhea, "rhea-acme"),
        caller("plan token", Kind::Plan, plan_token),
        caller("write token", Kind::Write, app.write_token.clone()),
        user("write user", Kind::Write, &wanda_token, wanda, "wanda-acme"),
        caller("admin token", Kind::Admin, app.admin_token.clone()),
        user("admin user", Kind::Admin, &ada_token, ada, "ada-acme"),
        caller(
            "other org's admin token",
            Kind::OtherOrg,
            app.other_token.clone(),
        ),
    ]
}

/// acme's data: states, a held lock, a module, a provider, a mirrored provider, a user, a
/// team and a policy.
async fn seed_acme(app: TestApp) -> Ctx {
    for serial in 1..=2 {
        app.write_state("ledger-prod", state_body(serial), None, &app.write_token)
            .await
            .assert_status(StatusCode::OK);
    }
    app.write_state("ledger-scratch", state_body(1), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    app.lock("ledger-held", HELD_LOCK, &app.write_token)
        .await
        .assert_status(StatusCode::OK);

    crate::module_registry::publish(&app, "skynet/aws", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    crate::provider_registry::seed(&app, "1.0.0", &["linux_amd64"]).await;
    let mirror_zip = crate::provider_registry::mirror::null_zip("3.1.0", "linux", "amd64");
    crate::provider_registry::mirror::upload(
        &app,
        "3.1.0/linux_amd64",
        mirror_zip.clone(),
        Some(&app.admin_token),
    )
    .await
    .assert_status(StatusCode::CREATED);

    let carol_id = add_user(&app, ORG, "carol-acme", Role::Read).await;
    app.api(
        "POST",
        "/api/v1/orgs/acme/teams",
        &app.admin_token,
        Some(json!({ "name": "platform-acme", "role": "read" })),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let doc: Value = serde_json::from_str(POLICY_DOC).unwrap();
    app.api(
        "POST",
        "/api/v1/orgs/acme/policies",
        &app.admin_token,
        Some(json!({ "name": "readers-acme", "document": doc })),
    )
    .await
    .assert_status(StatusCode::CREATED);

    // A signed download link of the module, as Terraform receives it.
    let request = RequestBuilder::new("GET", "/v1/modules/acme/skynet/aws/1.0.0/download")
        .header("host", HOST)
        .bearer(&app.read_token);
    let resp = app.send(request.build()).await;
    resp.assert_status(StatusCode::NO_CONTENT);
    let url = resp.headers["x-terraform-get"].to_str().unwrap();
    let link = url
        .strip_prefix(&format!("http://{HOST}"))
        .unwrap_or_else(|| panic!("links are absolute under the request's host: {url}"))
        .to_string();
    let (head, signature) = link.split_once("signature=").unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered_link = format!("{head}signature={flipped}{}", &signature[1..]);

    Ctx {
        app,
        counter: AtomicU64::new(1),
        carol_id,
        link,
        tampered_link,
        mirror_zip,
    }
}

/// The outputs-only caller reads a filtered state: the outputs, no resources.
async fn outputs_only_reads_outputs(ctx: &Ctx, callers: &[Caller], failures: &mut Vec<String>) {
    let outputs = callers.iter().find(|c| c.kind == Kind::Outputs).unwrap();
    let resp = ctx
        .app
        .get_state("ledger-prod", outputs.secret.as_deref().unwrap())
        .await;
    resp.assert_status(StatusCode::OK);
    let body = resp.json();
    if body["outputs"]["endpoint"]["value"] != OUTPUT_MARKER {
        failures.push(format!("outputs-only state lacks the outputs: {body}"));
    }
    if body["resources"] != json!([]) || resp.text().contains(RESOURCE_SECRET) {
        failures.push(format!("outputs-only state shows resources: {body}"));
    }
    if body["lineage"] != LINEAGE || !body["serial"].is_i64() {
        failures.push(format!(
            "outputs-only state lacks serial or lineage: {body}"
        ));
    }
    // A full reader gets the whole document.
    let full = ctx.app.get_state("ledger-prod", &ctx.app.read_token).await;
    full.assert_status(StatusCode::OK);
    assert!(full.text().contains(RESOURCE_SECRET), "{}", full.text());
}

/// The other way round: acme's callers find nothing of the other org.
async fn acme_finds_nothing_of_the_other_org(
    ctx: &Ctx,
    callers: &[Caller],
    failures: &mut Vec<String>,
) {
    let app = &ctx.app;
    let other_state = json!({
        "version": 4, "serial": 1, "lineage": "other-lineage",
        "outputs": { "secret": { "value": "OTHER-ORG-SECRET-42", "type": "string" } },
        "resources": [],
    })
    .to_string();
    let write = RequestBuilder::new("POST", "/state/other/other-vault-ws")
        .basic(&app.other_token)
        .body(other_state.clone());
    app.send(write.build()).await.assert_status(StatusCode::OK);
    let publish = RequestBuilder::new("PUT", "/api/v1/modules/other/othermod/aws/1.0.0")
        .bearer(&app.other_token)
        .body(module_tarball("1.0.0"));
    app.send(publish.build())
        .await
        .assert_status(StatusCode::CREATED);
    add_user(app, OTHER_ORG, "olga-other", Role::Admin).await;
    // The other org sees its own data (so the 404s below are about acme's callers).
    app.api(
        "GET",
        "/api/v1/orgs/other/workspaces/other-vault-ws",
        &app.other_token,
        None,
    )
    .await
    .assert_status(StatusCode::OK);

    let not_found: &[(&str, &str)] = &[
        ("GET", "/state/other/other-vault-ws"),
        ("POST", "/state/other/other-vault-ws"),
        ("LOCK", "/state/other/other-vault-ws"),
        ("GET", "/api/v1/orgs/other/workspaces"),
        ("GET", "/api/v1/orgs/other/workspaces/other-vault-ws"),
        (
            "GET",
            "/api/v1/orgs/other/workspaces/other-vault-ws/state-versions",
        ),
        (
            "GET",
            "/api/v1/orgs/other/workspaces/other-vault-ws/state-versions/1",
        ),
        ("GET", "/api/v1/orgs/other/tokens"),
        ("GET", "/api/v1/orgs/other/users"),
        ("GET", "/api/v1/orgs/other/users/olga-other"),
        ("GET", "/api/v1/orgs/other/teams"),
        ("GET", "/api/v1/orgs/other/policies"),
        ("GET", "/api/v1/orgs/other/audit-events"),
        ("GET", "/api/v1/orgs/other/registry"),
        ("GET", "/api/v1/orgs/other/gpg-keys"),
        ("GET", "/v1/modules/other"),
        ("GET", "/v1/modules/other/othermod/aws/versions"),
        ("GET", "/v1/modules/other/othermod/aws/1.0.0/download"),
        ("PUT", "/api/v1/modules/other/othermod/aws/9.9.9"),
    ];
    let listings: &[(&str, &str)] = &[
        ("GET", "/v1/modules"),
        ("GET", "/v1/modules/search?q=other"),
    ];
    let acme_callers = callers.iter().filter(|c| {
        matches!(
            c.kind,
            Kind::Outputs | Kind::Read | Kind::Plan | Kind::Write | Kind::Admin
        )
    });
    for caller in acme_callers {
        let secret = caller.secret.as_deref().unwrap();
        for (method, path, expected) in not_found
            .iter()
            .map(|(m, p)| (m, p, 404))
            .chain(listings.iter().map(|(m, p)| (m, p, 200)))
        {
            let mut request = RequestBuilder::new(method, path).header("host", HOST);
            request = if path.starts_with("/state/") {
                request.basic(secret)
            } else {
                request.bearer(secret)
            };
            request = match *method {
                "POST" => request.body(other_state.clone()),
                "LOCK" => request.body(lock_info("intruder")),
                "PUT" => request.body(module_tarball("9.9.9")),
                _ => request,
            };
            let resp = app.send(request.build()).await;
            let text = resp.text();
            if resp.status.as_u16() != expected {
                failures.push(format!(
                    "{method} {path} as acme's {}: got {}, expected {expected}; body: {}",
                    caller.label,
                    resp.status.as_u16(),
                    excerpt(&text)
                ));
            }
            for marker in OTHER_MARKERS {
                if text.contains(marker) {
                    failures.push(format!(
                        "{method} {path} as acme's {}: the answer contains the other org's {marker:?}",
                        caller.label
                    ));
                }
            }
        }
    }
    // Nothing changed over there.
    let read = RequestBuilder::new("GET", "/state/other/other-vault-ws").basic(&app.other_token);
    let resp = app.send(read.build()).await;
    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.text(), other_state);
}

async fn every_route_answers_every_caller_as_the_design_says(app: TestApp) {
    let callers = callers(&app).await;
    let ctx = seed_acme(app).await;
    let mut failures = Vec::new();

    let mut sent = ctx.run(&matrix(), &callers, &mut failures).await;
    outputs_only_reads_outputs(&ctx, &callers, &mut failures).await;
    acme_finds_nothing_of_the_other_org(&ctx, &callers, &mut failures).await;

    ctx.admin(
        "PATCH",
        "/api/v1/orgs/acme/registry",
        Some(json!({ "public": true })),
    )
    .await
    .assert_status(StatusCode::OK);
    sent += ctx
        .run(&public_namespace_matrix(), &callers, &mut failures)
        .await;

    assert!(sent > 1500, "only {sent} requests were sent");
    assert!(
        failures.is_empty(),
        "{} of {sent} answers break the authorization rules:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
