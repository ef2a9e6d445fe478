use clap::Parser;
use secret_injector_sidecar::{
    cli::{self, Cli},
    config::ProcessEnv,
    text,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    cli::init_logging(&cli.common);
    match cli::run(cli, &ProcessEnv).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line a person can act on; kubelet shows it as the termination
            // message (the log's last 2048 bytes), so it is bounded to fit.
            eprintln!("{}", text::bounded(&e.to_string(), text::TERMINATION_LIMIT));
            std::process::ExitCode::FAILURE
        }
    }
}
