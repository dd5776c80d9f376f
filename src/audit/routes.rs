//! `GET /api/v1/orgs/{org}/audit-events`: an org's trail, admin only.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::store::Filter;
use crate::error::{Error, Result};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::identity::Ctx;
use crate::identity::auth::Principal;
use crate::names::OrgName;
use crate::pagination::PageRequest;

pub fn routes() -> Router<Ctx> {
    Router::new().route("/api/v1/orgs/{org}/audit-events", get(list_events))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
    actor: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

fn time(name: &str, text: Option<String>) -> Result<Option<DateTime<Utc>>> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    Error::invalid(format!(
                        "{name} must be an RFC 3339 time such as 2026-01-02T03:04:05Z"
                    ))
                })
        })
        .transpose()
}

impl ListParams {
    fn filter(self) -> Result<Filter> {
        let outcome = self.outcome.filter(|o| !o.is_empty());
        if let Some(o) = &outcome
            && !super::OUTCOMES.contains(&o.as_str())
        {
            return Err(Error::invalid(format!(
                "outcome must be one of {}",
                super::OUTCOMES.join(", ")
            )));
        }
        // An empty parameter means no filter, as a blank form field would.
        Ok(Filter {
            actor: self.actor.filter(|a| !a.is_empty()),
            action: self.action.filter(|a| !a.is_empty()),
            resource_prefix: self.resource.filter(|r| !r.is_empty()),
            outcome,
            since: time("since", self.since)?,
            until: time("until", self.until)?,
        })
    }
}

async fn list_events(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let page = PageRequest {
        limit: params.limit,
        offset: params.offset,
        cursor: None,
    }
    .validate()?;
    let filter = params.filter()?;
    let events = super::service::list_events(&app, &principal, &org, &filter, page).await?;
    Ok(Json(events).into_response())
}
