//! Terraform working directories and the processes run in them.
//!
//! Configurations hold only `locals` and `output` blocks: the tests have no
//! network, and outputs are enough to make Terraform read and write state.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::{Role, Terrace, terraform_bin};

/// Upper bound for one Terraform command, so a hung process fails the test
/// instead of stalling the whole run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// The server address the examples under `examples/terraform/` use.
const EXAMPLE_BASE_URL: &str = "https://terrace.example.com";

/// Subcommands that accept `-input` and `-no-color`.
const INTERACTIVE_COMMANDS: [&str; 3] = ["init", "plan", "apply"];

/// A directory with a `main.tf`, plus its own CLI configuration (empty unless
/// a test adds to it).
pub struct Workdir {
    root: TempDir,
    backend: String,
    password: Option<String>,
    outputs: Vec<(String, String)>,
    /// The CA bundle Terraform trusts (`SSL_CERT_FILE`), for HTTPS servers.
    ssl_cert_file: Option<PathBuf>,
    /// A private `HOME` whose `~/.terraform.d` Terraform reads (no `TF_CLI_CONFIG_FILE`,
    /// which would hide it), for `terraform login`.
    home: Option<PathBuf>,
}

impl Workdir {
    /// A configuration whose `backend "http"` points at `workspace` on
    /// `server`, locking with LOCK/UNLOCK on the state address.
    pub fn new(server: &Terrace, workspace: &str, role: Role) -> Self {
        let mut workdir = Self::local();
        workdir.use_terrace(server, workspace, role);
        workdir
    }

    /// Like [`Workdir::new`], but locking with POST/DELETE on the `/lock`
    /// address, the way clients limited to standard methods are configured.
    pub fn with_lock_path(server: &Terrace, workspace: &str, role: Role) -> Self {
        let mut workdir = Self::local();
        let state_url = server.state_url(workspace);
        let lock_url = server.lock_url(workspace);
        workdir.backend = http_backend(&[
            ("address", &state_url),
            ("lock_address", &lock_url),
            ("lock_method", "POST"),
            ("unlock_address", &lock_url),
            ("unlock_method", "DELETE"),
        ]);
        workdir.password = Some(server.token(role).to_owned());
        workdir.write_config();
        workdir
    }

    /// A configuration whose `backend "http"` is the state address `url` (of a server this
    /// harness did not start, such as one in a container), with `token` as the password.
    pub fn at_url(url: &str, token: &str) -> Self {
        let mut workdir = Self::local();
        workdir.backend = http_backend(&[
            ("address", url),
            ("lock_address", url),
            ("unlock_address", url),
        ]);
        workdir.password = Some(token.to_owned());
        workdir.write_config();
        workdir
    }

    /// A configuration with the default local backend.
    pub fn local() -> Self {
        let mut workdir = Self::empty();
        workdir.set_outputs(&[("greeting", "hello")]);
        workdir
    }

    /// The `main.tf` of `examples/terraform/<name>`, pointed at `server`.
    ///
    /// Examples are written for `https://terrace.example.com`; running them
    /// here keeps them from going stale.
    pub fn from_example(name: &str, server: &Terrace, role: Role) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/terraform")
            .join(name)
            .join("main.tf");
        let example = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
        assert!(
            example.contains(EXAMPLE_BASE_URL),
            "{} should address {EXAMPLE_BASE_URL}",
            path.display()
        );
        let workdir = Self::empty();
        let config = example.replace(EXAMPLE_BASE_URL, server.base_url());
        std::fs::write(workdir.path().join("main.tf"), config).expect("write main.tf");
        Workdir {
            password: Some(server.token(role).to_owned()),
            ..workdir
        }
    }

    /// A configuration that installs from `server`'s registry: `main_tf` is
    /// written verbatim, Terraform trusts the server's CA, and the CLI
    /// configuration holds a `credentials "<host>"` block with the token of
    /// `role` (none when `role` is `None`, for anonymous reads).
    pub fn registry(server: &Terrace, role: Option<Role>, main_tf: &str) -> Self {
        let workdir = Workdir {
            ssl_cert_file: Some(server.ca_path()),
            ..Self::empty()
        };
        std::fs::write(workdir.path().join("main.tf"), main_tf).expect("write main.tf");
        if let Some(role) = role {
            workdir.append_cli_config(&format!(
                "credentials {:?} {{\n  token = {:?}\n}}\n",
                server.host(),
                server.token(role)
            ));
        }
        workdir
    }

    /// Appends `text` to the CLI configuration (`TF_CLI_CONFIG_FILE`), e.g. a
    /// `provider_installation` block.
    pub fn append_cli_config(&self, text: &str) {
        let path = self.cli_config_path();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
        file.write_all(format!("{text}\n").as_bytes())
            .unwrap_or_else(|error| panic!("append to {}: {error}", path.display()));
    }

    /// The text of a file in the working directory, e.g.
    /// `.terraform/modules/modules.json` or `.terraform.lock.hcl`.
    pub fn read_file(&self, rel: &str) -> String {
        let path = self.path().join(rel);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
    }

    fn cli_config_path(&self) -> PathBuf {
        self.root.path().join("cli.tfrc")
    }

    /// A working directory with no configuration yet.
    fn empty() -> Self {
        let root = tempfile::Builder::new()
            .prefix("terrace-terraform-")
            .tempdir()
            .expect("create a temporary Terraform directory");
        std::fs::create_dir(root.path().join("work")).expect("create the working directory");
        // An empty CLI configuration hides the developer's own (plugin
        // caches, credentials, mirrors) from the tests.
        std::fs::write(root.path().join("cli.tfrc"), "").expect("write the CLI configuration");
        Workdir {
            root,
            backend: String::new(),
            password: None,
            outputs: Vec::new(),
            ssl_cert_file: None,
            home: None,
        }
    }

    /// Gives Terraform its own `HOME` with an empty `~/.terraform.d` (which `terraform login`
    /// needs but does not create) and leaves `TF_CLI_CONFIG_FILE` unset, so the credentials
    /// that `terraform login` saves there are used.
    pub fn with_own_home(mut self) -> Self {
        let home = self.root.path().join("home");
        std::fs::create_dir_all(home.join(".terraform.d")).expect("create ~/.terraform.d");
        self.home = Some(home);
        self
    }

    /// The `HOME` from [`Workdir::with_own_home`].
    pub fn home(&self) -> PathBuf {
        self.home
            .clone()
            .expect("home() needs Workdir::with_own_home()")
    }

    /// Makes Terraform trust `server`'s CA (for an http backend on an HTTPS server).
    pub fn trust(&mut self, server: &Terrace) {
        self.ssl_cert_file = Some(server.ca_path());
    }

    /// Sends `password` as the http backend's password (`TF_HTTP_PASSWORD`).
    pub fn set_password(&mut self, password: &str) {
        self.password = Some(password.to_owned());
    }

    /// Switches the configuration to the http backend of `workspace`.
    ///
    /// The password goes through `TF_HTTP_PASSWORD`: Terraform 1.0.3 copies
    /// backend arguments from `main.tf` in plain text into `.terraform/`.
    pub fn use_terrace(&mut self, server: &Terrace, workspace: &str, role: Role) {
        let url = server.state_url(workspace);
        self.backend = http_backend(&[
            ("address", &url),
            ("lock_address", &url),
            ("unlock_address", &url),
        ]);
        self.password = Some(server.token(role).to_owned());
        self.write_config();
    }

    /// Replaces the outputs in `main.tf`, one string output per `(name, value)`.
    pub fn set_outputs(&mut self, outputs: &[(&str, &str)]) {
        self.outputs = outputs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        self.write_config();
    }

    fn write_config(&self) {
        let mut config = String::new();
        if !self.backend.is_empty() {
            config.push_str(&format!("terraform {{\n{}}}\n\n", self.backend));
        }
        config.push_str("locals {\n");
        for (name, value) in &self.outputs {
            config.push_str(&format!("  {name} = {value:?}\n"));
        }
        config.push_str("}\n");
        for (name, _) in &self.outputs {
            config.push_str(&format!(
                "\noutput {name:?} {{\n  value = local.{name}\n}}\n"
            ));
        }
        std::fs::write(self.path().join("main.tf"), config).expect("write main.tf");
    }

    /// The directory Terraform runs in.
    pub fn path(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// Runs Terraform to completion with stdin closed.
    pub fn terraform(&self, args: &[&str]) -> Output {
        self.spawn(args, Stdio::null()).finish()
    }

    /// Starts Terraform with a piped stdin, for commands that prompt.
    pub fn spawn_interactive(&self, args: &[&str]) -> TerraformProcess {
        self.spawn(args, Stdio::piped())
    }

    fn spawn(&self, args: &[&str], stdin: Stdio) -> TerraformProcess {
        let args = with_automation_flags(args);
        let mut command = Command::new(terraform_bin());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TF_") {
                command.env_remove(name);
            }
        }
        command
            .current_dir(self.path())
            .args(&args)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.home {
            Some(home) => command.env("HOME", home),
            None => command.env("TF_CLI_CONFIG_FILE", self.cli_config_path()),
        };
        if let Some(password) = &self.password {
            command.env("TF_HTTP_PASSWORD", password);
        }
        if let Some(ca) = &self.ssl_cert_file {
            // Go reads this bundle instead of the system's, so only the test CA is trusted.
            command.env("SSL_CERT_FILE", ca);
        }
        let child = command.spawn().expect("spawn terraform");
        TerraformProcess::start(format!("terraform {}", args.join(" ")), child)
    }
}

/// A `backend "http"` block; the password is left to `TF_HTTP_PASSWORD`.
fn http_backend(arguments: &[(&str, &str)]) -> String {
    let mut block = String::from("  backend \"http\" {\n");
    for (name, value) in arguments.iter().chain([&("username", "terraform")]) {
        block.push_str(&format!("    {name:<14} = {value:?}\n"));
    }
    block.push_str("  }\n");
    block
}

/// Adds `-no-color` and (unless the caller chose) `-input=false` to the
/// subcommands that take them.
fn with_automation_flags(args: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    if args
        .first()
        .is_some_and(|command| INTERACTIVE_COMMANDS.contains(&command.as_str()))
    {
        if !args.iter().any(|arg| arg.starts_with("-input")) {
            args.insert(1, "-input=false".to_owned());
        }
        args.insert(1, "-no-color".to_owned());
    }
    args
}

/// A running Terraform command; killed if dropped before it finishes.
pub struct TerraformProcess {
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout_chunks: Receiver<Vec<u8>>,
    stdout: Vec<u8>,
    stderr: Option<JoinHandle<String>>,
    started: Instant,
}

impl TerraformProcess {
    fn start(command: String, mut child: Child) -> Self {
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("terraform stdout is piped");
        let mut stderr = child.stderr.take().expect("terraform stderr is piped");
        let (chunks_tx, stdout_chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0_u8; 8192];
            while let Ok(read @ 1..) = stdout.read(&mut buffer) {
                if chunks_tx.send(buffer[..read].to_vec()).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        TerraformProcess {
            command,
            child,
            stdin,
            stdout_chunks,
            stdout: Vec::new(),
            stderr: Some(stderr),
            started: Instant::now(),
        }
    }

    /// Blocks until stdout contains `needle`; fails the test if the process
    /// exits or `timeout` passes first.
    pub fn wait_for_stdout(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !String::from_utf8_lossy(&self.stdout).contains(needle) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.stdout_chunks.recv_timeout(remaining) {
                Ok(chunk) => self.stdout.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "no {needle:?} on stdout within {timeout:?}\n{}",
                        self.collect()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("stdout closed before {needle:?}\n{}", self.collect());
                }
            }
        }
    }

    /// Everything read from stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Writes `text` to the process's stdin.
    pub fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin was piped");
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .expect("write to terraform's stdin");
    }

    /// Closes stdin and waits for the process to exit.
    pub fn finish(mut self) -> Output {
        self.collect()
    }

    fn collect(&mut self) -> Output {
        self.stdin = None;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll terraform") {
                break status;
            }
            if self.started.elapsed() > COMMAND_TIMEOUT {
                let _ = self.child.kill();
                let status = self.child.wait().expect("wait for killed terraform");
                let output = self.output(status);
                panic!("timed out after {COMMAND_TIMEOUT:?}\n{output}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.output(status)
    }

    fn output(&mut self, status: ExitStatus) -> Output {
        // The reader threads end at EOF, which follows the exit.
        while let Ok(chunk) = self.stdout_chunks.recv() {
            self.stdout.extend_from_slice(&chunk);
        }
        let stderr = self
            .stderr
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default();
        Output {
            command: self.command.clone(),
            status,
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr,
        }
    }
}

impl Drop for TerraformProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The outcome of a finished Terraform command.
pub struct Output {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Fails the test, showing both outputs, unless the command exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "expected success\n{self}");
        self
    }

    /// Fails the test, showing both outputs, if the command exited 0.
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.status.success(), "expected a failure\n{self}");
        self
    }

    /// Stdout parsed as JSON (`terraform state pull`, `output -json`).
    pub fn stdout_json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error})\n{self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}
