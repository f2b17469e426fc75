//! The `image-pull-secrets-provisioner` binary: flags → logger → controller → exit code, or the `check`
//! subcommand.

use std::process::ExitCode;

use image_pull_secrets_provisioner::config::{self, Command};
use image_pull_secrets_provisioner::shutdown::Shutdown;
use image_pull_secrets_provisioner::{check, controller, logger, signal};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "check") {
        return ExitCode::from(check::main(args.skip(1).collect()));
    }
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
    for notice in &config.notices {
        log::info!("{notice}");
    }
    let shutdown = Shutdown::new();
    signal::install(shutdown.clone())
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    controller::run(config, shutdown)
}
