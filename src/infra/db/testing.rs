//! Test databases: a fresh SQLite file per test and, when configured, a fresh PostgreSQL schema.

use super::Db;

/// A migrated SQLite database in its own temp dir (kept alive by the returned guard).
pub async fn sqlite() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/test.db", dir.path().display());
    let db = Db::connect(&url).await.expect("sqlite connects");
    db.migrate().await.expect("sqlite migrates");
    (db, dir)
}

/// A migrated PostgreSQL schema of its own, or `None` when `TERRACE_TEST_POSTGRES_URL` is unset
/// (a failure under `CI`, where PostgreSQL must be tested).
pub async fn postgres() -> Option<Db> {
    let url = match std::env::var("TERRACE_TEST_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("TERRACE_TEST_POSTGRES_URL must be set in CI")
        }
        Err(_) => return None,
    };
    Some(
        super::connect_in_new_schema(&url)
            .await
            .expect("postgres test schema"),
    )
}
