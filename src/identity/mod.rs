//! Who may do what: orgs and their API tokens, users and memberships, teams, custom policies,
//! authentication and the one authorization function (`auth`), and `terraform login`.
//!
//! Every other feature authenticates through the [`auth::Principal`] extractor and authorizes
//! through [`auth::authorize`].

pub mod auth;
pub mod browser;
pub mod login;
pub mod orgs;
pub mod policies;
pub mod teams;
pub mod users;

use std::ops::Deref;
use std::sync::Arc;

use axum::Router;

use crate::infra::AppState;
use crate::infra::cache::{Invalidation, TtlCache};

/// The name of the API-token cache, for invalidations.
pub const TOKEN_CACHE: &str = "tokens";

/// The identity feature's state: the shared infrastructure plus its caches and login keys.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub app: AppState,
    /// Valid tokens by hash, so hot paths skip the token query.
    pub tokens: Arc<TtlCache<Vec<u8>, auth::CachedToken>>,
    /// Signing keys of login tokens.
    pub login_keys: Arc<auth::jwt::LoginKeys>,
    /// `terraform login` settings and attempt limits.
    pub login: Arc<login::LoginState>,
}

impl Ctx {
    pub fn new(app: &AppState, login: login::LoginSettings) -> Ctx {
        Ctx {
            tokens: app.caches.register(TOKEN_CACHE, 10_000),
            login_keys: Arc::default(),
            login: Arc::new(login::LoginState::new(login)),
            app: app.clone(),
        }
    }

    /// A token, team, membership or policy changed: any cached token's rights may be wrong.
    pub async fn grants_changed(&self) {
        self.app.invalidate(Invalidation::all(TOKEN_CACHE)).await;
    }
}

/// Feature states that can authenticate callers (through the [`auth::Principal`] extractor).
pub trait HasIdentity {
    fn identity(&self) -> &Ctx;
}

/// For a feature state with an `identity: identity::Ctx` field: derefs to the shared
/// infrastructure and authenticates callers through identity.
macro_rules! feature_ctx {
    ($ctx:ty) => {
        impl std::ops::Deref for $ctx {
            type Target = $crate::infra::AppState;

            fn deref(&self) -> &$crate::infra::AppState {
                &self.identity.app
            }
        }

        impl $crate::identity::HasIdentity for $ctx {
            fn identity(&self) -> &$crate::identity::Ctx {
                &self.identity
            }
        }
    };
}
pub(crate) use feature_ctx;

impl HasIdentity for Ctx {
    fn identity(&self) -> &Ctx {
        self
    }
}

impl Deref for Ctx {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}

pub fn routes() -> Router<Ctx> {
    Router::new()
        .merge(orgs::routes())
        .merge(users::routes())
        .merge(teams::routes())
        .merge(policies::routes())
        .merge(login::routes())
}
