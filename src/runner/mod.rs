//! The runner: claims runs (over HTTP from `terrace runner`, or in process inside `terrace
//! serve`, through the same protocol functions), runs Terraform in a scratch directory per
//! run, streams its output back, heartbeats (stopping Terraform when a cancel comes back),
//! and reports the outcome.

pub mod http;
pub mod local;
mod terraform;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::deployments::views::{Claim, Finish, HeartbeatReply};

/// How a runner reaches the server's runner protocol.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Waits up to `wait` for a run; `None` when nothing came.
    fn claim(
        &self,
        runner: &str,
        wait: Duration,
    ) -> impl Future<Output = anyhow::Result<Option<Claim>>> + Send;
    fn heartbeat(
        &self,
        run: i64,
        lease: &str,
    ) -> impl Future<Output = anyhow::Result<HeartbeatReply>> + Send;
    /// Uploads `data` at `offset`; answers the log's size.
    fn log(
        &self,
        run: i64,
        lease: &str,
        offset: i64,
        data: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<i64>> + Send;
    fn finish(
        &self,
        run: i64,
        lease: &str,
        done: Finish,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What a runner needs besides its transport.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This runner's name, shown on the runs it takes.
    pub name: String,
    /// The Terraform binary.
    pub terraform: PathBuf,
    /// How long Terraform may take to stop after SIGINT before it is killed.
    pub grace: Duration,
}

/// Finds `bin` (a path, or a name on `PATH`).
pub fn find_terraform(bin: &str) -> Option<PathBuf> {
    let path = PathBuf::from(bin);
    if bin.contains('/') {
        return path.is_file().then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(bin))
            .find(|candidate| candidate.is_file())
    })
}

/// Claims and executes runs, one at a time, until the future is dropped.
pub async fn work<T: Transport>(transport: T, settings: Settings) {
    use tracing::Instrument;
    let mut backoff = Duration::from_millis(200);
    loop {
        let claimed = transport
            .claim(&settings.name, Duration::from_secs(25))
            .instrument(tracing::debug_span!("runner.claim", runner = %settings.name))
            .await;
        match claimed {
            Ok(Some(claim)) => {
                backoff = Duration::from_millis(200);
                let run = claim.run_id;
                // One trace per run phase: its Terraform commands, heartbeats and reports.
                let span = tracing::debug_span!(
                    "runner.run",
                    run_id = run,
                    phase = %claim.phase,
                    operation = %claim.operation,
                    org = %claim.org,
                    workspace = %claim.workspace,
                    runner = %settings.name,
                );
                let executed = terraform::execute(&transport, &settings, claim)
                    .instrument(span)
                    .await;
                if let Err(e) = executed {
                    tracing::warn!(run, error = format!("{e:#}"), "run failed to report");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "claiming runs failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
