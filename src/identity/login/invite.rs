//! `/invite/{secret}`: where a user created without a password chooses one.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;

use super::oauth::{csrf_ok, csrf_token};
use super::pages;
use crate::error::Result;
use crate::http::extract::ApiPath;
use crate::identity::Ctx;
use crate::identity::auth::{password, token};
use crate::identity::users::store;

fn expired() -> Response {
    pages::error(
        StatusCode::NOT_FOUND,
        "Invitation not found",
        "This invitation link is unknown, already used or expired. Ask an administrator for a \
         new one.",
    )
}

async fn invited_user(app: &Ctx, secret: &str) -> Result<Option<store::UserRow>> {
    let user = store::find_user_by_invite(&app.db, &token::hash(secret)).await?;
    Ok(user.filter(|u| {
        u.password_hash.is_none() && u.invite_expires_at.is_some_and(|at| at > Utc::now())
    }))
}

pub async fn invite_page(
    State(app): State<Ctx>,
    headers: HeaderMap,
    ApiPath(secret): ApiPath<String>,
) -> Result<Response> {
    let Some(user) = invited_user(&app, &secret).await? else {
        return Ok(expired());
    };
    let (csrf, cookies) = csrf_token(&app, &headers)?;
    Ok(pages::invite_form(
        StatusCode::OK,
        &user.name,
        &csrf,
        None,
        &cookies,
    ))
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn invite_submit(
    State(app): State<Ctx>,
    headers: HeaderMap,
    ApiPath(secret): ApiPath<String>,
    form: std::result::Result<Form<InviteForm>, FormRejection>,
) -> Result<Response> {
    let Some(user) = invited_user(&app, &secret).await? else {
        return Ok(expired());
    };
    let Ok(Form(form)) = form else {
        return Ok(pages::error(
            StatusCode::BAD_REQUEST,
            "Cannot set password",
            "the form could not be read",
        ));
    };
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(pages::error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form was not sent from this page or has expired. Reload it and try again.",
        ));
    }
    crate::infra::notes::note_actor(format!("user:{}", user.name), None);
    crate::infra::notes::note_access(
        "user:accept-invitation",
        format!("user:{}", user.name),
        None,
    );
    let problem = if form.password != form.confirm {
        Some("The two passwords differ.".to_string())
    } else {
        password::validate(&form.password)
            .err()
            .map(|e| e.to_string())
    };
    if let Some(problem) = problem {
        return Ok(pages::invite_form(
            StatusCode::BAD_REQUEST,
            &user.name,
            &form.csrf,
            Some(&problem),
            &[],
        ));
    }
    let hash = password::hash_async(form.password).await?;
    store::set_password(&app.db, user.id, &hash).await?;
    Ok(pages::invite_done(&user.name))
}
