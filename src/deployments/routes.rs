//! `/api/v1/orgs/{org}/deployments`, `/api/v1/orgs/{org}/runs`, runner tokens, and the runner
//! protocol under `/api/v1/runner/`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::views::{ClaimRequest, CreateDeployment, CreateRunnerToken, Finish, UpdateDeployment};
use super::{Ctx, protocol, runs, service};
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::auth::{Principal, Role};
use crate::names::OrgName;
use crate::pagination::PageRequest;

/// The header naming a runner's claim in heartbeats, log uploads and finish calls.
pub const LEASE_HEADER: &str = "terrace-lease";
/// The header with the offset to ask for next, on log reads.
pub const NEXT_OFFSET_HEADER: &str = "terrace-next-offset";
/// Largest finish body (a saved plan travels in it).
const FINISH_LIMIT: usize = 64 * 1024 * 1024;
/// Largest log chunk.
const LOG_CHUNK_LIMIT: u64 = 1024 * 1024;

pub fn routes() -> Router<Ctx> {
    let dep = "/api/v1/orgs/{org}/deployments";
    let run = "/api/v1/orgs/{org}/runs/{id}";
    Router::new()
        .route(dep, get(list_deployments).post(create_deployment))
        .route(
            &format!("{dep}/{{name}}"),
            get(show_deployment)
                .patch(update_deployment)
                .delete(destroy_deployment),
        )
        .route(&format!("{dep}/{{name}}/runs"), get(list_runs).post(plan))
        .route(run, get(show_run))
        .route(&format!("{run}/apply"), post(apply))
        .route(&format!("{run}/discard"), post(discard))
        .route(&format!("{run}/cancel"), post(cancel))
        .route(&format!("{run}/override"), post(override_gate))
        .route(&format!("{run}/logs"), get(logs))
        .route(
            "/api/v1/orgs/{org}/runner-tokens",
            post(create_runner_token),
        )
        .route("/api/v1/runner/claim", post(claim))
        .route("/api/v1/runner/runs/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/runner/runs/{id}/logs", put(upload_log))
        .route(
            "/api/v1/runner/runs/{id}/finish",
            post(finish).layer(DefaultBodyLimit::max(FINISH_LIMIT)),
        )
}

async fn create_deployment(
    State(app): State<Ctx>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath(org): ApiPath<String>,
    ApiJson(req): ApiJson<CreateDeployment>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let base = app.base_url(&headers);
    let dep = service::create(&app, &principal, &org, &base, req).await?;
    Ok((StatusCode::CREATED, Json(dep)).into_response())
}

async fn list_deployments(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(service::list(&app, &principal, &org, page.validate()?).await?).into_response())
}

async fn show_deployment(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(service::show(&app, &principal, &org, &name).await?).into_response())
}

async fn update_deployment(
    State(app): State<Ctx>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath((org, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UpdateDeployment>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let base = app.base_url(&headers);
    Ok(Json(service::update(&app, &principal, &org, &name, &base, req).await?).into_response())
}

async fn destroy_deployment(
    State(app): State<Ctx>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let base = app.base_url(&headers);
    let run = service::destroy(&app, &principal, &org, &name, &base).await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

async fn list_runs(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(runs::list(&app, &principal, &org, &name, page.validate()?).await?).into_response())
}

async fn plan(
    State(app): State<Ctx>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let base = app.base_url(&headers);
    let run = service::plan(&app, &principal, &org, &name, &base).await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

async fn show_run(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, id)): ApiPath<(String, i64)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(runs::show(&app, &principal, &org, id).await?).into_response())
}

async fn apply(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, id)): ApiPath<(String, i64)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(runs::apply(&app, &principal, &org, id).await?).into_response())
}

async fn discard(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, id)): ApiPath<(String, i64)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(runs::discard(&app, &principal, &org, id).await?).into_response())
}

async fn cancel(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, id)): ApiPath<(String, i64)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(runs::cancel(&app, &principal, &org, id).await?).into_response())
}

async fn override_gate(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, id)): ApiPath<(String, i64)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(super::phase::override_gate(&app, &principal, &org, id).await?).into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    offset: Option<i64>,
}

/// The log as text from `offset` (the next offset in `Terrace-Next-Offset`), or with
/// `Accept: text/event-stream` every chunk as it arrives until the run stops.
async fn logs(
    State(app): State<Ctx>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath((org, id)): ApiPath<(String, i64)>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let offset = query.offset.unwrap_or(0);
    let (bytes, next, done) = runs::log(&app, &principal, &org, id, offset).await?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_stream {
        let mut response = (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            Body::from(bytes),
        )
            .into_response();
        response
            .headers_mut()
            .insert(NEXT_OFFSET_HEADER, HeaderValue::from(next));
        return Ok(response);
    }
    // Authorized above; the stream keeps reading the same run.
    let state = (app, principal, org, id, offset, false);
    let stream = futures::stream::unfold(
        state,
        |(app, principal, org, id, offset, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match runs::log(&app, &principal, &org, id, offset).await {
                    Ok((bytes, next, _)) if !bytes.is_empty() => {
                        let event = Event::default()
                            .id(next.to_string())
                            .data(String::from_utf8_lossy(&bytes));
                        return Some((
                            Ok::<Event, Infallible>(event),
                            (app, principal, org, id, next, false),
                        ));
                    }
                    Ok((_, next, true)) => {
                        let event = Event::default().event("end").data(next.to_string());
                        return Some((Ok(event), (app, principal, org, id, next, true)));
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                    Err(_) => return None,
                }
            }
        },
    );
    let _ = (bytes, done);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn create_runner_token(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(req): ApiJson<CreateRunnerToken>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let name = req.name.unwrap_or_else(|| "runner".into());
    let spec = crate::identity::orgs::TokenSpec::new(&name, Role::Runner);
    let created = crate::identity::orgs::create_token(&app.db, &principal, &org, spec).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn claim(
    State(app): State<Ctx>,
    principal: Principal,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<Response> {
    Ok(match protocol::claim(&app, &principal, &req).await? {
        Some(claim) => Json(claim).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

fn lease(headers: &HeaderMap) -> Result<String> {
    headers
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Error::invalid("the Terrace-Lease header is required"))
}

async fn heartbeat(
    State(app): State<Ctx>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response> {
    let lease = lease(&headers)?;
    Ok(Json(protocol::heartbeat(&app, &principal, id, &lease).await?).into_response())
}

async fn upload_log(
    State(app): State<Ctx>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<LogQuery>,
    body: Body,
) -> Result<Response> {
    let lease = lease(&headers)?;
    let data = crate::http::body::read_small_body(&headers, body, LOG_CHUNK_LIMIT).await?;
    let size = protocol::append_log(
        &app,
        &principal,
        id,
        &lease,
        query.offset.unwrap_or(0),
        &data,
    )
    .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(NEXT_OFFSET_HEADER, HeaderValue::from(size));
    Ok(response)
}

async fn finish(
    State(app): State<Ctx>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> Result<Response> {
    let lease = lease(&headers)?;
    let done: Finish = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid(format!("invalid finish body: {e}")))?;
    protocol::finish(&app, &principal, id, &lease, done).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
