//! Registry namespaces (the service): a namespace is an org, plus registry settings (public
//! reads, server-side signing). Every registry service starts with [`resolve`].

use chrono::Utc;

pub use super::views::{Namespace, NamespaceSettings};
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal, Resource, authorize};
use crate::identity::orgs::find_org;
use crate::infra::db::Db;
use crate::registry::Ctx;

/// What in a namespace an action is about, for policies such as `module:network/*`.
#[derive(Clone, Copy, Debug)]
pub enum Item<'a> {
    Whole,
    Module { name: &'a str, system: &'a str },
    Provider { name: &'a str },
}

/// Finds namespace `name` and authorizes `action` on it as a whole.
pub async fn resolve(
    app: &Ctx,
    principal: &Principal,
    action: Action,
    name: &str,
) -> Result<Namespace> {
    resolve_item(app, principal, action, name, Item::Whole).await
}

/// Finds namespace `name` and authorizes `action` on `item` in it. An unknown namespace looks
/// exactly like a private one to a caller without a token, so existence is not revealed.
pub async fn resolve_item(
    app: &Ctx,
    principal: &Principal,
    action: Action,
    name: &str,
    item: Item<'_>,
) -> Result<Namespace> {
    let found = match app.namespaces.get(&name.to_string()) {
        Some(found) => found,
        None => {
            let ticket = app.namespaces.ticket();
            let found = load(&app.db, name).await?;
            app.namespaces
                .insert(ticket, name.to_string(), found.clone());
            found
        }
    };
    let public = found.as_ref().is_some_and(|ns| ns.public);
    let resource = match item {
        Item::Whole => Resource::Namespace { org: name, public },
        Item::Module {
            name: module,
            system,
        } => Resource::Module {
            org: name,
            public,
            name: module,
            system,
        },
        Item::Provider { name: provider } => Resource::Provider {
            org: name,
            public,
            name: provider,
        },
    };
    authorize(principal, action, resource)?;
    found.ok_or(Error::NotFound("namespace"))
}

async fn load(db: &Db, name: &str) -> Result<Option<Namespace>> {
    let Some(org) = find_org(db, name).await? else {
        return Ok(None);
    };
    let (public, server_signing) = super::store::find_settings(db, org.id)
        .await?
        .unwrap_or((false, false));
    Ok(Some(Namespace {
        org_id: org.id,
        name: org.name,
        public,
        server_signing,
    }))
}

/// Changes namespace settings (registry admin).
pub async fn update(
    app: &Ctx,
    principal: &Principal,
    name: &str,
    changes: NamespaceSettings,
) -> Result<Namespace> {
    let current = resolve(app, principal, Action::RegistryAdmin, name).await?;
    let public = changes.public.unwrap_or(current.public);
    let server_signing = changes.server_signing.unwrap_or(current.server_signing);
    super::store::save_settings(&app.db, current.org_id, public, server_signing, Utc::now())
        .await?;
    app.invalidate(crate::infra::cache::Invalidation::key(
        super::NAMESPACE_CACHE,
        &name.to_string(),
    ))
    .await;
    Ok(Namespace {
        public,
        server_signing,
        ..current
    })
}
