//! The durable work queue (`jobs` table); it lives in `infra` so that features can hand out
//! their own work through it.

pub use crate::infra::queue::*;
