//! The costs API: estimates, catalogues, billing imports, budgets and reports.

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::Ctx;
use super::catalogue::Format;
use super::report::{self, GroupBy};
use super::views::{CostSettings, NewBudget};
use super::{budgets, service};
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::auth::Principal;
use crate::names::{OrgName, WorkspaceName};
use crate::pagination::PageRequest;

/// A plan's JSON may be large.
const PLAN_LIMIT: usize = 64 * 1024 * 1024;
/// Uploaded price files and billing exports are streamed, never held whole.
const UPLOAD_LIMIT: usize = 16 * 1024 * 1024 * 1024;

pub fn routes() -> Router<Ctx> {
    let ws = "/api/v1/orgs/{org}/workspaces/{workspace}/cost";
    Router::new()
        .route(ws, get(workspace_cost))
        .route(&format!("{ws}/history"), get(workspace_history))
        .route(&format!("{ws}/settings"), get(settings).put(put_settings))
        .route(
            "/api/v1/orgs/{org}/cost-estimates",
            axum::routing::post(estimate_plan).layer(DefaultBodyLimit::max(PLAN_LIMIT)),
        )
        .route("/api/v1/orgs/{org}/runs/{id}/cost", get(run_cost))
        .route(
            "/api/v1/orgs/{org}/blueprints/{name}/cost",
            get(blueprint_cost),
        )
        .route(
            "/api/v1/orgs/{org}/prices",
            get(list_catalogues)
                .post(import_prices)
                .layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route(
            "/api/v1/orgs/{org}/costs/imports",
            get(list_imports)
                .post(import_costs)
                .layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route("/api/v1/orgs/{org}/costs/report", get(cost_report))
        .route(
            "/api/v1/orgs/{org}/budgets",
            get(list_budgets).post(create_budget),
        )
        .route(
            "/api/v1/orgs/{org}/budgets/{name}",
            get(show_budget).delete(delete_budget),
        )
}

fn names(org: &str, ws: &str) -> Result<(OrgName, WorkspaceName)> {
    Ok((OrgName::parse(org)?, WorkspaceName::parse(ws)?))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
}

impl ListParams {
    fn page(&self) -> Result<crate::pagination::Page> {
        PageRequest {
            limit: self.limit,
            offset: self.offset,
            cursor: None,
        }
        .validate()
    }
}

async fn workspace_cost(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, ws)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, ws) = names(&org, &ws)?;
    Ok(Json(service::workspace_cost(&app, &principal, &org, &ws).await?).into_response())
}

async fn workspace_history(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, ws)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let (org, ws) = names(&org, &ws)?;
    let page = params.page()?;
    Ok(Json(service::workspace_history(&app, &principal, &org, &ws, page).await?).into_response())
}

async fn settings(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, ws)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, ws) = names(&org, &ws)?;
    Ok(Json(service::workspace_settings(&app, &principal, &org, &ws).await?).into_response())
}

async fn put_settings(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, ws)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<CostSettings>,
) -> Result<Response> {
    let (org, ws) = names(&org, &ws)?;
    Ok(
        Json(service::put_workspace_settings(&app, &principal, &org, &ws, body).await?)
            .into_response(),
    )
}

#[derive(Debug, Deserialize)]
struct EstimateParams {
    workspace: Option<String>,
}

async fn estimate_plan(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(params): ApiQuery<EstimateParams>,
    ApiJson(plan): ApiJson<serde_json::Value>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let ws = params
        .workspace
        .as_deref()
        .map(WorkspaceName::parse)
        .transpose()?;
    Ok(
        Json(service::estimate_plan(&app, &principal, &org, ws.as_ref(), &plan).await?)
            .into_response(),
    )
}

async fn run_cost(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, id)): ApiPath<(String, i64)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(service::run_cost(&app, &principal, &org, id).await?).into_response())
}

async fn blueprint_cost(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let view = super::blueprint::blueprint_cost(&app, &principal, &org, &name).await?;
    Ok(Json(view).into_response())
}

async fn list_catalogues(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let page = params.page()?;
    Ok(Json(service::list_catalogues(&app, &principal, &org, page).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct ImportParams {
    format: Option<String>,
    source: Option<String>,
}

/// The `file` part of a multipart upload (its first part).
async fn file_part(multipart: &mut Multipart) -> Result<axum::extract::multipart::Field<'_>> {
    multipart
        .next_field()
        .await
        .map_err(|e| Error::invalid(format!("multipart body: {e}")))?
        .filter(|field| field.name() == Some("file"))
        .ok_or_else(|| Error::invalid("the multipart body's first part must be `file`"))
}

async fn import_prices(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(params): ApiQuery<ImportParams>,
    mut multipart: Multipart,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let format = params
        .format
        .as_deref()
        .and_then(Format::parse)
        .ok_or_else(|| Error::invalid(format!("format must be {}", Format::NAMES)))?;
    let field = file_part(&mut multipart).await?;
    let source = params
        .source
        .or_else(|| field.file_name().map(str::to_string))
        .unwrap_or_else(|| "upload".into());
    let view = service::import_prices(&app, &principal, &org, format, &source, field).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list_imports(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let page = params.page()?;
    Ok(Json(service::list_imports(&app, &principal, &org, page).await?).into_response())
}

async fn import_costs(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(params): ApiQuery<ImportParams>,
    mut multipart: Multipart,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let field = file_part(&mut multipart).await?;
    let filename = field.file_name().unwrap_or("upload.csv").to_string();
    let view = service::import_costs(
        &app,
        &principal,
        &org,
        &filename,
        params.source.as_deref(),
        field,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize)]
struct ReportParams {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
    basis: Option<String>,
    measure: Option<String>,
    format: Option<String>,
}

async fn cost_report(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let this_month = budgets::this_month();
    let group_by = params.group_by.as_deref().unwrap_or("workspace");
    let request = report::Request {
        from: params.from.unwrap_or_else(|| this_month.clone()),
        to: params.to.unwrap_or(this_month),
        group_by: GroupBy::parse(group_by).ok_or_else(|| {
            Error::invalid("group_by is workspace, blueprint, service or tag:KEY")
        })?,
        basis: params.basis.unwrap_or_else(|| "both".into()),
        measure: params.measure.unwrap_or_else(|| "EffectiveCost".into()),
    };
    let csv = params.format.as_deref() == Some("csv")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"));
    if let Some(format) = params
        .format
        .as_deref()
        .filter(|f| !["csv", "json"].contains(f))
    {
        return Err(Error::invalid(format!("format {format:?} is json or csv")));
    }
    let report = report::report(&app, &principal, &org, request).await?;
    if csv {
        let text = report::to_csv(&report)?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response());
    }
    Ok(Json(report).into_response())
}

async fn list_budgets(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let page = params.page()?;
    Ok(Json(budgets::list(&app, &principal, &org, page).await?).into_response())
}

async fn create_budget(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(body): ApiJson<NewBudget>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let view = budgets::create(&app, &principal, &org, body).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn show_budget(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(budgets::show(&app, &principal, &org, &name).await?).into_response())
}

async fn delete_budget(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    budgets::delete(&app, &principal, &org, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
