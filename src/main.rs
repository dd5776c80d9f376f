use clap::Parser;

/// mimalloc instead of the system allocator: a request makes on the order of a hundred small
/// allocations (headers, extensions, futures, strings), and glibc's malloc spent a quarter of
/// a small request's instructions on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Library errors (OpenPGP's, for one) capture a backtrace when RUST_BACKTRACE is set, and
    // formatting such an error resolves its symbols: a second of CPU for one bad key upload.
    // Terrace's errors carry their own context; panics keep their backtraces.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: nothing else runs yet; the runtime and its threads start below.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = terrace::cli::Cli::parse();
    match runtime.block_on(terrace::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
