use clap::Parser;

/// mimalloc instead of the system allocator: a request makes on the order of a hundred small
/// allocations (headers, extensions, futures, strings), and glibc's malloc spent a quarter of
/// a small request's instructions on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = terrace::cli::Cli::parse();
    match terrace::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
