//! One claimed phase of a run: Terraform in a scratch directory, its output streamed to the
//! run's log, heartbeats (and cancels) alongside, the outcome reported at the end.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::Mutex;
use tracing::Instrument;

use super::{Settings, Transport};
use crate::deployments::views::{Claim, Finish};

/// What the heartbeat learned: keep going, interrupt, or kill.
const RUNNING: u8 = 0;
const INTERRUPT: u8 = 1;
const KILL: u8 = 2;

/// Output not yet uploaded and where it goes.
struct Log {
    pending: Vec<u8>,
    offset: i64,
}

struct Job<'a, T> {
    transport: &'a T,
    claim: &'a Claim,
    settings: &'a Settings,
    dir: &'a Path,
    cli_config: std::path::PathBuf,
    log: Mutex<Log>,
    stop: Arc<AtomicU8>,
}

enum Outcome {
    Done(Box<Finish>),
    Canceled,
}

pub async fn execute<T: Transport>(
    transport: &T,
    settings: &Settings,
    claim: Claim,
) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("terrace-run-")
        .tempdir()
        .context("creating the run's scratch directory")?;
    let dir = scratch.path();
    for (name, content) in &claim.files {
        if name.contains('/') || name.starts_with('.') {
            anyhow::bail!("refusing file name {name:?}");
        }
        std::fs::write(dir.join(name), content)?;
    }
    let cli_config = dir.join(".terraformrc");
    let mut rc = format!(
        "credentials \"{}\" {{\n  token = \"{}\"\n}}\n",
        claim.host, claim.job_token
    );
    if let Some(mirror) = &claim.mirror_url {
        // Providers of Terrace's own registry come straight from it; the mirror holds the
        // public ones (and Terraform cannot form a mirror path for a host with a port).
        let own = format!("{}/*/*", claim.host);
        rc.push_str(&format!(
            "provider_installation {{\n  network_mirror {{\n    url     = \"{mirror}\"\n    exclude = [\"{own}\"]\n  }}\n  direct {{\n    include = [\"{own}\"]\n  }}\n}}\n"
        ));
    }
    write_private(&cli_config, rc.as_bytes())?;
    let job = Job {
        transport,
        claim: &claim,
        settings,
        dir,
        cli_config,
        log: Mutex::new(Log {
            pending: Vec::new(),
            offset: claim.log_offset,
        }),
        stop: Arc::new(AtomicU8::new(RUNNING)),
    };
    job.say(&format!(
        "terrace: run {} ({} phase) on runner {}\n",
        claim.run_id, claim.phase, settings.name
    ))
    .await;
    let outcome = {
        let work = job.phases();
        tokio::pin!(work);
        let beat = job.heartbeats();
        tokio::pin!(beat);
        let flush = job.flusher();
        tokio::pin!(flush);
        loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                () = &mut beat => {}
                () = &mut flush => {}
            }
        }
    };
    let done = match outcome {
        Ok(Outcome::Done(done)) => *done,
        Ok(Outcome::Canceled) => {
            job.say("terrace: canceled\n").await;
            Finish {
                status: "canceled".into(),
                error: Some("canceled".into()),
                ..empty()
            }
        }
        Err(e) => {
            job.say(&format!("terrace: {e:#}\n")).await;
            Finish {
                status: "errored".into(),
                error: Some(format!("{e:#}")),
                ..empty()
            }
        }
    };
    job.flush().await;
    transport
        .finish(claim.run_id, &claim.lease, done)
        .await
        .context("reporting the run's outcome")?;
    drop(scratch);
    Ok(())
}

fn empty() -> Finish {
    Finish {
        status: String::new(),
        error: None,
        plan_json: None,
        plan_file: None,
        has_changes: None,
        outputs: None,
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

impl<T: Transport> Job<'_, T> {
    async fn say(&self, text: &str) {
        self.log
            .lock()
            .await
            .pending
            .extend_from_slice(text.as_bytes());
    }

    /// Uploads what is pending (kept for the next try when the upload fails).
    async fn flush(&self) {
        let mut log = self.log.lock().await;
        if log.pending.is_empty() {
            return;
        }
        let data = std::mem::take(&mut log.pending);
        let len = data.len() as i64;
        match self
            .transport
            .log(
                self.claim.run_id,
                &self.claim.lease,
                log.offset,
                data.clone(),
            )
            .await
        {
            Ok(size) => log.offset = size.max(log.offset + len),
            Err(e) => {
                tracing::debug!(error = %e, "log upload failed; will retry");
                let mut rest = data;
                rest.append(&mut log.pending);
                log.pending = rest;
            }
        }
    }

    async fn flusher(&self) {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.flush().await;
        }
    }

    async fn heartbeats(&self) {
        let every = Duration::from_secs(self.claim.heartbeat_seconds.max(1));
        loop {
            tokio::time::sleep(every).await;
            let beat = self
                .transport
                .heartbeat(self.claim.run_id, &self.claim.lease)
                .instrument(tracing::debug_span!(
                    "runner.heartbeat",
                    run_id = self.claim.run_id
                ))
                .await;
            match beat {
                Ok(reply) if reply.force => self.stop.store(KILL, Ordering::SeqCst),
                Ok(reply) if reply.cancel => {
                    let _ = self.stop.compare_exchange(
                        RUNNING,
                        INTERRUPT,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                }
                Ok(_) => {}
                Err(e)
                    if e.to_string().starts_with("409")
                        || e.to_string().contains("no longer holds")
                        || e.to_string().contains("lease was lost") =>
                {
                    tracing::warn!(run = self.claim.run_id, "lease lost; stopping Terraform");
                    self.stop.store(KILL, Ordering::SeqCst);
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    async fn phases(&self) -> anyhow::Result<Outcome> {
        let destroy = self.claim.operation == "destroy";
        match self.claim.phase.as_str() {
            "plan" => {
                if self
                    .terraform(&["init", "-input=false", "-no-color"], false)
                    .await?
                    .0
                    != 0
                {
                    anyhow::bail!("terraform init failed; see the log");
                }
                let mut args = vec![
                    "plan",
                    "-input=false",
                    "-no-color",
                    "-out=tfplan",
                    "-detailed-exitcode",
                ];
                if destroy {
                    args.push("-destroy");
                }
                let (plan_code, _) = self.terraform(&args, false).await?;
                if self.stopped() {
                    return Ok(Outcome::Canceled);
                }
                if plan_code != 0 && plan_code != 2 {
                    anyhow::bail!("terraform plan failed (exit {plan_code}); see the log");
                }
                let (code, json) = self.terraform(&["show", "-json", "tfplan"], true).await?;
                if code != 0 {
                    anyhow::bail!("terraform show -json failed (exit {code})");
                }
                let plan_json: serde_json::Value =
                    serde_json::from_slice(&json).context("reading terraform show -json")?;
                let plan = std::fs::read(self.dir.join("tfplan"))?;
                Ok(Outcome::Done(Box::new(Finish {
                    status: "planned".into(),
                    plan_json: Some(plan_json),
                    plan_file: Some(base64::engine::general_purpose::STANDARD.encode(plan)),
                    has_changes: Some(plan_code == 2 || has_changes(&json)),
                    ..empty()
                })))
            }
            "apply" => {
                let plan = self
                    .claim
                    .plan_file
                    .as_deref()
                    .context("the claim carries no saved plan")?;
                let plan = base64::engine::general_purpose::STANDARD.decode(plan)?;
                write_private(&self.dir.join("tfplan"), &plan)?;
                if self
                    .terraform(&["init", "-input=false", "-no-color"], false)
                    .await?
                    .0
                    != 0
                {
                    anyhow::bail!("terraform init failed; see the log");
                }
                let (code, _) = self
                    .terraform(
                        &[
                            "apply",
                            "-input=false",
                            "-no-color",
                            "-auto-approve",
                            "tfplan",
                        ],
                        false,
                    )
                    .await?;
                if self.stopped() {
                    return Ok(Outcome::Canceled);
                }
                if code != 0 {
                    anyhow::bail!("terraform apply failed (exit {code}); see the log");
                }
                let (_, outputs) = self.terraform(&["output", "-json"], true).await?;
                Ok(Outcome::Done(Box::new(Finish {
                    status: "applied".into(),
                    outputs: serde_json::from_slice(&outputs).ok(),
                    ..empty()
                })))
            }
            other => anyhow::bail!("unknown phase {other}"),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) != RUNNING
    }

    /// Runs Terraform with `args`; its output goes to the log, or is returned when `capture`
    /// (machine-readable output, which may hold sensitive values, never goes to the log).
    #[tracing::instrument(
        level = "debug",
        name = "terraform",
        skip_all,
        fields(
            otel.name = %format_args!("terraform {}", args.first().copied().unwrap_or_default()),
            terraform.command = args.first().copied().unwrap_or_default(),
        )
    )]
    async fn terraform(&self, args: &[&str], capture: bool) -> anyhow::Result<(i32, Vec<u8>)> {
        if self.stopped() {
            return Ok((130, Vec::new()));
        }
        if !capture {
            self.say(&format!("$ terraform {}\n", args.join(" "))).await;
        }
        let mut child = Command::new(&self.settings.terraform)
            .args(args)
            .current_dir(self.dir)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_HTTP_PASSWORD", &self.claim.job_token)
            .env_remove("TF_HTTP_ADDRESS")
            .env_remove("TF_WORKSPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: Terraform re-executes itself under a wrapper process, and
            // a signal must reach the whole group, not only the wrapper we started.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.settings.terraform.display()))?;
        let _group = Group(child.id());
        let _watchdog = child.id().map(Watchdog::start);
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let mut captured = Vec::new();
        let (mut a, mut b) = ([0u8; 8192], [0u8; 8192]);
        let mut interrupted: Option<Instant> = None;
        let mut killed = false;
        let status = loop {
            tokio::select! {
                n = read(&mut out, &mut a), if out.is_some() => match n {
                    0 => out = None,
                    n if capture => captured.extend_from_slice(&a[..n]),
                    n => self.log.lock().await.pending.extend_from_slice(&a[..n]),
                },
                n = read(&mut err, &mut b), if err.is_some() => match n {
                    0 => err = None,
                    n => self.log.lock().await.pending.extend_from_slice(&b[..n]),
                },
                status = child.wait(), if out.is_none() && err.is_none() => break status?,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    let stop = self.stop.load(Ordering::SeqCst);
                    if stop >= INTERRUPT && interrupted.is_none() {
                        if let Some(pid) = child.id() {
                            self.say("terrace: cancel requested; interrupting Terraform\n").await;
                            signal_group(pid, libc::SIGINT);
                        }
                        interrupted = Some(Instant::now());
                    }
                    let overdue = interrupted.is_some_and(|at| at.elapsed() > self.settings.grace);
                    if !killed && (stop == KILL || overdue) {
                        self.say("terrace: killing Terraform\n").await;
                        if let Some(pid) = child.id() {
                            signal_group(pid, libc::SIGKILL);
                        }
                        let _ = child.start_kill();
                        killed = true;
                    }
                }
            }
        };
        Ok((status.code().unwrap_or(130), captured))
    }
}

/// Sends `signal` to the process group Terraform leads (its wrapper and the real process).
fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: signalling the process group of our own child, which it leads.
    unsafe { libc::kill(-(pid as libc::pid_t), signal) };
}

/// Kills what is left of Terraform's process group when a phase is abandoned (the runner
/// stops, or the lease is lost); a no-op once the group has exited.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            signal_group(pid, libc::SIGKILL);
        }
    }
}

/// A small process outside the runner that kills Terraform's process group if the runner dies
/// without cleaning up (`kill -9`, a crash, the OOM killer): it waits on a pipe only the
/// runner holds; end of file without a farewell line means the runner is gone. Without it an
/// orphaned `terraform apply` would go on changing infrastructure for a run already marked
/// lost.
struct Watchdog(Option<tokio::process::ChildStdin>);

impl Watchdog {
    fn start(pgid: u32) -> Watchdog {
        let child = Command::new("/bin/sh")
            .args(["-c", r#"read -r _ || kill -s KILL -- "-$0" 2>/dev/null"#])
            .arg(pgid.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Outside the runner's group too, so a signal to the runner's group leaves it to act.
            .process_group(0)
            .spawn();
        match child {
            Ok(mut child) => Watchdog(child.stdin.take()),
            Err(e) => {
                tracing::warn!("no watchdog for Terraform's process group: {e}");
                Watchdog(None)
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(stdin) = self.0.take() {
            // The farewell line: the phase ended under the runner's control.
            if let Ok(mut stdin) = stdin.into_owned_fd().map(std::fs::File::from) {
                use std::io::Write;
                let _ = stdin.write_all(b"done\n");
            }
        }
    }
}

/// Whether `terraform show -json` of a plan changes any resource or output.
fn has_changes(json: &[u8]) -> bool {
    let plan: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    let resources = plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rc| {
            let actions = &rc["change"]["actions"];
            actions != &serde_json::json!(["no-op"]) && actions != &serde_json::json!(["read"])
        });
    let outputs = plan["output_changes"]
        .as_object()
        .into_iter()
        .flatten()
        .any(|(_, c)| c["actions"] != serde_json::json!(["no-op"]));
    resources || outputs
}

async fn read<R: tokio::io::AsyncRead + Unpin>(reader: &mut Option<R>, buf: &mut [u8]) -> usize {
    match reader {
        Some(r) => r.read(buf).await.unwrap_or(0),
        None => std::future::pending().await,
    }
}
