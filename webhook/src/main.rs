use clap::Parser;
use secret_injector_webhook::cli::{self, Cli};

// glibc malloc was 18% of the server's CPU under load (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One rustls provider for the whole process (kube and the server share it).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("webhook: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
