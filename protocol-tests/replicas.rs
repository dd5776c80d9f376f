//! Terrace scaled out: three `terrace serve` replicas on one PostgreSQL database and one S3
//! bucket, and real Terraform processes, each talking to a different replica, racing to apply
//! to one workspace. Locks and serial checks live in the shared database, so the versions must
//! come out consecutive, with none lost and none duplicated.
//!
//! Needs `TERRACE_TEST_POSTGRES_URL` and `TERRACE_TEST_S3_ENDPOINT` (moto with a `terrace`
//! bucket, see `scripts/ensure-object-stores`); skips without them, fails under `CI`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::Rng;

use crate::harness::{Role, Terrace, Workdir};

const REPLICAS: usize = 3;
/// Successful applies each worker makes.
const APPLIES_PER_WORKER: usize = 6;
const WORKSPACE: &str = "shared-network";
/// How long one apply may keep finding the lock taken before the test gives up.
const LOCK_PATIENCE: Duration = Duration::from_secs(60);
/// Terraform 1.0.3's http backend fails at once on a held lock (423) instead of waiting.
const LOCK_HELD: &str = "Error acquiring the state lock";

/// The shared database and bucket for the replicas, or `None` (after a notice) when the test
/// environment has neither.
pub(crate) fn shared_settings() -> Option<Vec<(&'static str, String)>> {
    let (Ok(postgres), Ok(s3)) = (
        std::env::var("TERRACE_TEST_POSTGRES_URL"),
        std::env::var("TERRACE_TEST_S3_ENDPOINT"),
    ) else {
        let hint = "TERRACE_TEST_POSTGRES_URL and TERRACE_TEST_S3_ENDPOINT must both be set";
        if std::env::var_os("CI").is_some() {
            panic!("{hint}");
        }
        eprintln!("skipping replica test: {hint}");
        return None;
    };
    let unique = uuid::Uuid::new_v4().simple().to_string();
    // A schema of its own in the shared test database: PostgreSQL puts the tables wherever
    // `search_path` points.
    let schema = format!("replicas_{unique}");
    tokio::runtime::Runtime::new()
        .expect("start a runtime")
        .block_on(async {
            let pool = sqlx::PgPool::connect(&postgres).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&pool)
                .await?;
            pool.close().await;
            Ok::<_, sqlx::Error>(())
        })
        .expect("create the test schema");
    let separator = if postgres.contains('?') { '&' } else { '?' };
    let database_url = format!("{postgres}{separator}options=-c%20search_path%3D{schema}");
    // Every replica must hold the same master key, or none could read the others' writes.
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    Some(vec![
        ("TERRACE_DATABASE_URL", database_url),
        ("TERRACE_STORAGE_URL", format!("s3://terrace/{unique}")),
        ("TERRACE_ENCRYPTION_KEY", key),
        ("AWS_ENDPOINT", s3),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ])
}

/// What one worker did: the `run` output value of each successful apply, and how often it
/// found the lock taken.
struct WorkerReport {
    applied: Vec<String>,
    lock_refusals: usize,
}

/// Applies `APPLIES_PER_WORKER` times through `server`, each with a new `run` output, so each
/// successful apply writes one new state; a held lock means waiting a little and trying again.
fn worker(server: &Terrace, worker: usize) -> WorkerReport {
    let mut dir = Workdir::new(server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();
    let mut rng = rand::thread_rng();
    let mut report = WorkerReport {
        applied: Vec::new(),
        lock_refusals: 0,
    };
    for round in 0..APPLIES_PER_WORKER {
        let run = format!("worker-{worker}-apply-{round}");
        dir.set_outputs(&[("run", &run)]);
        let started = Instant::now();
        loop {
            let apply = dir.terraform(&["apply", "-auto-approve"]);
            if apply.status.success() {
                break;
            }
            assert!(
                apply.stderr.contains(LOCK_HELD),
                "an apply through replica {worker} failed for another reason than a held lock\n{apply}"
            );
            assert!(
                started.elapsed() < LOCK_PATIENCE,
                "replica {worker} found the lock taken for {LOCK_PATIENCE:?}\n{apply}"
            );
            report.lock_refusals += 1;
            // Jittered, so the workers do not keep colliding in step.
            std::thread::sleep(Duration::from_millis(rng.gen_range(20..200)));
        }
        report.applied.push(run);
    }
    report
}

#[test]
fn applies_racing_through_three_replicas_keep_every_version_once() {
    require_terraform!();
    let Some(settings) = shared_settings() else {
        return;
    };
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let replicas = Terrace::start_replicas(REPLICAS, &settings);

    let reports: Vec<WorkerReport> = std::thread::scope(|scope| {
        let workers: Vec<_> = replicas
            .iter()
            .enumerate()
            .map(|(index, server)| scope.spawn(move || worker(server, index)))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker panicked"))
            .collect()
    });

    let applied: Vec<&String> = reports.iter().flat_map(|r| &r.applied).collect();
    let refusals: usize = reports.iter().map(|r| r.lock_refusals).sum();
    eprintln!(
        "{} applies through {REPLICAS} replicas, {refusals} refused for a held lock",
        applied.len()
    );

    // Newest first; read through a replica that did not necessarily write the newest one.
    let versions = replicas[REPLICAS - 1].state_versions(WORKSPACE);
    let serials: Vec<i64> = versions
        .iter()
        .rev()
        .map(|version| version["serial"].as_i64().expect("serial is an integer"))
        .collect();
    let first = serials.first().copied().unwrap_or_default();
    let consecutive: Vec<i64> = (first..).take(serials.len()).collect();
    assert_eq!(
        serials, consecutive,
        "serials should be consecutive and unique"
    );
    assert_eq!(
        versions.len(),
        applied.len(),
        "one version per successful apply: {serials:?}"
    );

    // Every successful apply's output is in exactly one version, each version from a replica.
    let mut seen: HashMap<String, i64> = HashMap::new();
    for (index, &serial) in serials.iter().enumerate() {
        let server = &replicas[index % REPLICAS];
        let state = server.state_version(WORKSPACE, serial);
        let run = state["outputs"]["run"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("version {serial} has no `run` output: {state:#}"))
            .to_owned();
        if let Some(earlier) = seen.insert(run.clone(), serial) {
            panic!("{run} is in both serial {earlier} and serial {serial}");
        }
    }
    for run in &applied {
        assert!(
            seen.contains_key(*run),
            "the apply of {run} left no version"
        );
    }

    // Every replica serves the newest version as the current state.
    let newest = serials.last().copied().expect("at least one version");
    for (index, server) in replicas.iter().enumerate() {
        let state = server.pull_state(WORKSPACE).expect("a current state");
        assert_eq!(
            state["serial"].as_i64(),
            Some(newest),
            "replica {index} serves serial {} as current, newest is {newest}",
            state["serial"]
        );
        assert_eq!(state, server.state_version(WORKSPACE, newest));
        assert_eq!(server.lock_holder(WORKSPACE), None, "replica {index}");
    }
}
