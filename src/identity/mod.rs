//! People and permissions: users and their org memberships, teams, custom policies.
//!
//! What a caller may do is decided by `auth::authorize`; this feature only manages the rows
//! that decision reads.

pub mod policies;
pub mod routes;
pub mod store;
pub mod teams;
pub mod users;

use axum::Router;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(routes::routes())
        .merge(teams::routes())
        .merge(policies::routes())
}
