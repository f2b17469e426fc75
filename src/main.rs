//! The `image-pull-secrets-provisioner` binary: flags → logger → controller → exit code.

use std::process::ExitCode;

use image_pull_secrets_provisioner::config::{self, Command};
use image_pull_secrets_provisioner::shutdown::Shutdown;
use image_pull_secrets_provisioner::{controller, logger, signal};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("image-pull-secrets-provisioner: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let config = match config::parse(std::env::args_os().skip(1).collect())? {
        Command::Help => {
            print!("{}", config::help());
            return Ok(());
        }
        Command::Version => {
            println!(
                "image-pull-secrets-provisioner {}",
                env!("CARGO_PKG_VERSION")
            );
            return Ok(());
        }
        Command::Run(config) => *config,
    };
    logger::init(config.log_level, config.log_format)?;
    let shutdown = Shutdown::new();
    signal::install(shutdown.clone())
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    controller::run(config, shutdown)
}
