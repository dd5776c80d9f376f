//! The in-process transport of `terrace serve`'s own runners: the protocol functions called
//! directly, as the system principal.

use std::time::Duration;

use crate::deployments::Ctx;
use crate::deployments::protocol;
use crate::deployments::views::{Claim, ClaimRequest, Finish, HeartbeatReply};
use crate::identity::auth::Principal;

#[derive(Clone, Debug)]
pub struct Local(pub Ctx);

impl super::Transport for Local {
    async fn claim(&self, runner: &str, wait: Duration) -> anyhow::Result<Option<Claim>> {
        let req = ClaimRequest {
            runner: runner.to_string(),
            wait_ms: Some(wait.as_millis() as u64),
        };
        Ok(protocol::claim(&self.0, &Principal::System, &req).await?)
    }

    async fn heartbeat(&self, run: i64, lease: &str) -> anyhow::Result<HeartbeatReply> {
        Ok(protocol::heartbeat(&self.0, &Principal::System, run, lease).await?)
    }

    async fn log(&self, run: i64, lease: &str, offset: i64, data: Vec<u8>) -> anyhow::Result<i64> {
        Ok(protocol::append_log(&self.0, &Principal::System, run, lease, offset, &data).await?)
    }

    async fn finish(&self, run: i64, lease: &str, done: Finish) -> anyhow::Result<()> {
        Ok(protocol::finish(&self.0, &Principal::System, run, lease, done).await?)
    }
}
