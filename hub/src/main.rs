//! `hub`: command-line entry point. Parses the arguments and hands over to
//! the library (`hub::run`); see `hub --help` and docs/osdp-cli.md.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hub::Cli::parse();
    hub::init_tracing();
    // `hub access` has its own exit codes: 0 granted, 1 denied, 2 error.
    // `hub run` and `hub check-config`: 0 fine, 2 config errors, 1 other.
    let cli = match cli.command {
        hub::HubCommand::Access(args) => return hub::access_cli::main(args),
        hub::HubCommand::Run(args) => return hub::daemon::run_main(&args),
        hub::HubCommand::CheckConfig(args) => return hub::daemon::check_config_main(&args),
        command => hub::Cli { command },
    };
    let result: anyhow::Result<()> = hub::run(cli).map_err(anyhow::Error::from);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every error message already names its cause; no backtrace
            // for a technician's typo or a missing port.
            eprintln!("hub: {e}");
            ExitCode::FAILURE
        }
    }
}
