//! Who is calling and what they may do.
//!
//! Authentication happens in the [`Principal`] extractor; authorization in [`authorize`],
//! the one function every service calls before touching data.

mod authz;
mod principal;
pub mod store;
pub mod token;

pub use authz::{Action, Resource, Role, authorize};
pub use principal::Principal;
