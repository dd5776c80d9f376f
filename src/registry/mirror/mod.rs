//! Provider network mirror (`/v1/mirror/`), for sites that cannot reach public registries.
//!
//! It serves two kinds of providers under their origin address:
//! - providers hosted in Terrace, when the origin hostname is this server's own host (the
//!   `Host` header, or the host of the public URL); the namespace's usual read rules apply;
//! - archives uploaded for other registries (`registry.terraform.io/hashicorp/null` …) with
//!   `PUT /api/v1/mirror/{hostname}/{namespace}/{type}/{version}/{os}_{arch}` or
//!   `terrace mirror import DIR`.
//!
//! The mirror is instance-wide: reading uploaded archives takes a token of any org (any
//! role), uploading takes an admin token of the org named by the `mirror_org` setting. Terraform cannot reach providers whose
//! hostname has a port through a mirror.

pub mod routes;
pub mod service;
mod store;

pub use routes::routes;
