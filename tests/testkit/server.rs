//! The real `terrace` binary, as the tests that need a process run it: CLI commands and
//! `terrace serve` on a data directory of the test's own, configured only by the settings the
//! test passes (no `TERRACE_*` variable of the caller's environment leaks in).
//!
//! `terrace serve` listens on a free loopback port and reports it on stdout
//! (`listening on http://127.0.0.1:41234`); [`Setup::serve`] waits for that line. A [`Server`]
//! is stopped when dropped: gracefully (SIGTERM, then SIGKILL after a grace period) or, for
//! crash tests, with SIGKILL at once ([`Setup::kill_on_drop`]).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long `terrace serve` may take to report its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the process is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The line `terrace serve` prints once it accepts connections, followed by its base URL.
const READY_PREFIX: &str = "listening on ";

/// How a dropped [`Server`] is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnDrop {
    /// SIGTERM, then SIGKILL after [`SHUTDOWN_TIMEOUT`].
    Terminate,
    /// SIGKILL at once: the process gets no chance to finish anything.
    Kill,
}

/// How `terrace` runs for a test: its data directory and its settings.
#[derive(Clone, Debug)]
pub struct Setup {
    data_dir: PathBuf,
    /// Environment variables every command gets (`TERRACE_DATABASE_URL`, `AWS_*`, …).
    env: Vec<(String, String)>,
    /// Prefixes of inherited variables removed besides `TERRACE_` (such as `AWS_`).
    removed: Vec<String>,
    on_drop: OnDrop,
}

impl Setup {
    pub fn new(data_dir: impl Into<PathBuf>, env: &[(&str, &str)]) -> Setup {
        Setup {
            data_dir: data_dir.into(),
            env: env
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            removed: Vec::new(),
            on_drop: OnDrop::Terminate,
        }
    }

    /// Commands of this setup do not inherit the caller's variables starting with `prefix`
    /// (only the settings given keep them), e.g. `AWS_` for a test of credential lookup.
    pub fn without_inherited(mut self, prefix: &str) -> Setup {
        self.removed.push(prefix.to_owned());
        self
    }

    /// The same setup with `env` added (later settings win).
    pub fn with_env(mut self, env: &[(&str, &str)]) -> Setup {
        self.env.extend(
            env.iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        self
    }

    /// Servers of this setup are killed (SIGKILL) when dropped instead of stopped gracefully.
    pub fn kill_on_drop(mut self) -> Setup {
        self.on_drop = OnDrop::Kill;
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A `terrace` command with this setup: no inherited `TERRACE_*` settings, a free
    /// loopback port, the data directory, the settings, and no standard input.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_terrace"));
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("TERRACE_")
                || self
                    .removed
                    .iter()
                    .any(|p| name_text.starts_with(p.as_str()))
            {
                command.env_remove(name);
            }
        }
        command
            .env("TERRACE_LISTEN", "127.0.0.1:0")
            .env("TERRACE_DATA_DIR", &self.data_dir)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null());
        command
    }

    /// Runs `terrace <args>` to the end.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("run the terrace CLI")
    }

    /// Runs `terrace <args>`, asserts it succeeded and returns its trimmed stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "`terrace {}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Starts `terrace serve <args>` with its stderr appended to `log`, and waits until it
    /// listens.
    pub fn serve(&self, args: &[&str], log: &Path) -> Server {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|error| panic!("open {}: {error}", log.display()));
        let child = self
            .command()
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn `terrace serve`");
        let mut server = Server {
            child,
            base_url: String::new(),
            setup: self.clone(),
            log_path: log.to_owned(),
        };
        server.base_url = server.wait_until_listening();
        server
    }
}

/// A running `terrace serve`, stopped when dropped (see [`Setup::kill_on_drop`]); its log is
/// printed when it is dropped during a panic.
pub struct Server {
    pub child: Child,
    /// Where it listens, e.g. `http://127.0.0.1:41234`.
    pub base_url: String,
    setup: Setup,
    log_path: PathBuf,
}

impl Server {
    /// The setup it was started with, for CLI commands on the same data and settings.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Reads stdout until the readiness line and returns the base URL from it.
    fn wait_until_listening(&mut self) -> String {
        let stdout = self.child.stdout.take().expect("server stdout is piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        // Keeps draining stdout after readiness so the server never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(url) = line.trim().strip_prefix(READY_PREFIX) {
                        return url.trim_end_matches('/').to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "`terrace serve` printed no `{READY_PREFIX}…` line within {STARTUP_TIMEOUT:?}\n{}",
                    self.log()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait for `terrace serve`");
                    panic!(
                        "`terrace serve` exited with {status} before listening\n{}",
                        self.log()
                    );
                }
            }
        }
    }

    /// The server log so far (shared with other servers written to the same file).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        format!("--- terrace serve log ---\n{log}")
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, so in-flight requests finish; SIGKILL if it has not exited in time.
    pub fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match self.setup.on_drop {
            OnDrop::Terminate => self.terminate(),
            OnDrop::Kill => self.kill(),
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}
