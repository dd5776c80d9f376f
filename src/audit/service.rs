//! Reading the trail: admins of an org, newest first, filtered.

use super::store::{self, EventRow, Filter};
use crate::error::Result;
use crate::identity::Ctx;
use crate::identity::auth::Principal;
use crate::names::OrgName;
use crate::pagination::{Page, Paginated};

/// One page of `org`'s events matching `filter` (org admins only).
pub async fn list_events(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    filter: &Filter,
    page: Page,
) -> Result<Paginated<EventRow>> {
    let org_id = crate::identity::orgs::resolve_admin(&app.db, principal, org).await?;
    let rows = store::list(&app.db, org_id, filter, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page))
}
