//! Operations on a whole installation, run by the CLI (and the sweep by a job): backup and
//! restore, verification of every blob, the orphan sweep and master-key rotation. They work on
//! the database and blob store directly and know no feature's rules.

pub mod backup;
pub mod keys;
mod store;
pub mod sweep;
pub mod verify;
