//! Who is calling and what they may do.
//!
//! Authentication happens in the [`Principal`] extractor (API tokens, login JWTs); authorization
//! in [`authorize`], the one function every service calls before touching data.

mod authz;
pub mod jwt;
pub mod password;
pub mod policy;
mod principal;
pub mod store;
pub mod token;

pub use authz::{Action, OrgGrant, Resource, Role, allowed, authorize};
pub use principal::{CachedToken, Caller, Identity, Principal, user_caller};
