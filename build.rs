// `sqlx::migrate!` embeds the migration files at compile time but does not tell Cargo to
// rebuild when one is added, so a new migration could be missed by an incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
