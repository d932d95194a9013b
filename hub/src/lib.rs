//! The edge access-control hub: drives OSDP card readers on RS-485 buses.
//!
//! - [`access`]: the access model, the indexed [`access::View`] and the pure
//!   decision function [`access::decide()`] (no I/O).
//! - [`bus`]: the tokio driver. One task per serial port owns the port and an
//!   [`osdp::cp::ControlPanel`]; the application talks to it through a
//!   [`bus::BusHandle`] (submit commands, read device status, receive events).
//! - [`osdp_cli`]: `hub osdp`, the technician's tool: JSON lines in and out
//!   on one bus, and `hub osdp scan` to find devices.
//! - [`virtual_pd`]: `hub osdp pd`, a virtual reader on a serial port.
//! - [`demo`]: `hub demo`, the daemon on a simulated bus ([`bus::sim`],
//!   virtual secure readers) with the web page: no hardware, no broker.
//! - [`door`]: one door's strike, position switch, exit button and alarms.
//! - [`site`]: readers, credential input, decisions and doors wired together
//!   (sans-IO): bus events in, commands, decisions and alarms out.
//! - [`access_input`]: per-reader credential input (sans-IO): card reads and
//!   keypad keys in, complete presentations (card, PIN, card and PIN) out,
//!   with PIN timeouts and the wrong-PIN lockout.
//! - [`dataset_file`]: a data set from a JSON file, checked (no cloud).
//! - [`check_api`]: the door-access check as JSON and as an HTTP endpoint
//!   (`POST /api/v1/access/check`, axum).
//! - [`access_cli`]: `hub access check` and `hub access serve`.
//! - [`config`]: the hub's TOML config file, parsed once into a checked
//!   [`config::Config`] (errors name the key and the line).
//! - [`daemon`]: `hub run --config FILE`, the hub itself: store, data set,
//!   buses, the site controller, the HTTP check and event list, the web
//!   page (status snapshots, actions carried out in the site task); and
//!   `hub check-config`.
//! - [`notify`]: systemd `Type=notify` readiness, watchdog and stopping
//!   messages (no-ops without `NOTIFY_SOCKET`).
//! - [`events`]: access-log events ([`events::HubEvent`]) in the store's
//!   outbox, and `GET /api/v1/events`.
//! - [`store`]: the persistent store on sled: the cloud's data set (records
//!   in named collections, replaced or changed atomically) and the durable
//!   access-log outbox.
//! - [`status`]: the hub's status snapshot ([`status::HubStatus`]) shared
//!   by the web page, `/metrics` and health reports.
//! - [`web`]: the technician's web page (login, live status, actions) and
//!   Prometheus `/metrics`, on axum.
//! - [`site_data`]: the access data set in the store, one collection per
//!   kind of record, saved as one atomic snapshot and loaded consistently.
//! - [`cloud`]: the sync with the cloud over MQTT on the store (the
//!   `hub-sync` engine with the access model), for the daemon to start.
//!
//! The binary (`src/main.rs`) only parses the command line with [`Cli`],
//! calls [`init_tracing`] and hands over to [`run`] (or, for their exit
//! codes, to [`access_cli::main`], [`daemon::run_main`] and
//! [`daemon::check_config_main`]). Logs go to stderr
//! (`RUST_LOG` filters them); stdout carries only the tool's JSON lines.

pub mod access;
pub mod access_cli;
pub mod access_input;
pub mod bus;
pub mod check_api;
pub mod cloud;
pub mod config;
pub mod daemon;
pub mod dataset_file;
pub mod demo;
pub mod door;
pub mod events;
pub mod notify;
pub mod osdp_cli;
pub mod site;
pub mod site_data;
pub mod status;
pub mod store;
#[cfg(test)]
mod test_pty;
pub mod virtual_pd;
pub mod web;

use clap::{Parser, Subcommand};

/// The `hub` command line.
#[derive(Debug, Parser)]
#[command(
    name = "hub",
    version,
    about = "Edge access-control hub (OSDP over RS-485)"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: HubCommand,
}

/// Top-level subcommands.
// Parsed once per process: the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// OSDP technician tool: run a control panel on one bus and exchange
    /// JSON lines (events on stdout, requests on stdin), or scan a bus.
    /// See docs/osdp-cli.md.
    Osdp(osdp_cli::OsdpArgs),
    /// Demo without hardware: the hub daemon with virtual secure readers on
    /// a simulated RS-485 bus and the web page (a login is printed); cards
    /// presented on the page, typed, or automatically.
    Demo(demo::DemoArgs),
    /// Access decisions from a data-set file, without cloud or readers:
    /// `hub access check` (one decision as JSON) and `hub access serve` (the
    /// HTTP check endpoint). See docs/access-check.md.
    Access(access_cli::AccessArgs),
    /// The hub daemon: readers, doors, the access log and the HTTP check,
    /// from a config file. See docs/config.md.
    Run(daemon::RunArgs),
    /// Checks a config file: prints OK and a summary (exit 0) or every
    /// problem with its line (exit 2).
    CheckConfig(daemon::CheckConfigArgs),
    /// Reads a password (one line on stdin) and prints its Argon2id hash
    /// for the config's `[web] password_hash`.
    HashPassword,
}

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default: info
/// for this crate, warnings for everything else).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,hub=info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command line to completion on a new tokio runtime.
///
/// `hub access check` ends with `Ok` whether granted or denied; the binary
/// runs `hub access` through [`access_cli::main`] instead, for its exit
/// codes (0 granted, 1 denied, 2 error).
pub fn run(cli: Cli) -> Result<(), osdp_cli::CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| osdp_cli::CliError::Io {
            context: "starting the tokio runtime".into(),
            source,
        })?;
    let result = match cli.command {
        HubCommand::Osdp(args) => runtime.block_on(osdp_cli::run(args)),
        HubCommand::Demo(args) => runtime.block_on(demo::run(&args)),
        HubCommand::Access(args) => runtime
            .block_on(access_cli::run(args))
            .map(|_| ())
            .map_err(|e| osdp_cli::CliError::Usage(e.to_string())),
        HubCommand::Run(args) => config::load(&args.config)
            .map_err(daemon::DaemonError::from)
            .and_then(|c| runtime.block_on(daemon::run(c)))
            .map_err(|e| osdp_cli::CliError::Usage(e.to_string())),
        HubCommand::CheckConfig(args) => config::load(&args.config)
            .map(|_| ())
            .map_err(|e| osdp_cli::CliError::Usage(e.to_string())),
        HubCommand::HashPassword => hash_password_from_stdin(),
    };
    // Do not wait for blocking work (such as a pending stdin read).
    runtime.shutdown_background();
    result
}

/// `hub hash-password`: one line from stdin in, a PHC string out.
fn hash_password_from_stdin() -> Result<(), osdp_cli::CliError> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|source| osdp_cli::CliError::Io {
            context: "reading the password from stdin".into(),
            source,
        })?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(osdp_cli::CliError::Usage(
            "give the password as one line on stdin".into(),
        ));
    }
    let hash =
        web::auth::hash_password(password).map_err(|e| osdp_cli::CliError::Usage(e.to_string()))?;
    println!("{hash}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn osdp_command_lines() {
        let cli = Cli::try_parse_from([
            "hub",
            "osdp",
            "--port",
            "/dev/pts/3",
            "--pd",
            "1",
            "--pd",
            "2:install",
            "--install",
            "3",
            "--baud",
            "115200",
            "--exit-on-eof",
        ])
        .unwrap();
        let HubCommand::Osdp(args) = cli.command else {
            panic!("not osdp");
        };
        assert_eq!(args.port.as_deref(), Some("/dev/pts/3"));
        assert_eq!(args.pds, ["1", "2:install"]);
        assert_eq!(args.install, ["3"]);
        assert_eq!(args.baud, 115_200);
        assert!(args.exit_on_eof && args.command.is_none());

        // --install alone is enough; --port is required.
        assert!(Cli::try_parse_from(["hub", "osdp", "--port", "/dev/x", "--install", "3"]).is_ok());
        assert!(Cli::try_parse_from(["hub", "osdp", "--port", "/dev/x"]).is_err());
        assert!(Cli::try_parse_from(["hub", "osdp", "--pd", "1"]).is_err());
        // RS-485 tuning needs --rs485.
        assert!(Cli::try_parse_from([
            "hub",
            "osdp",
            "--port",
            "/dev/x",
            "--pd",
            "1",
            "--rs485-rts-low"
        ])
        .is_err());
    }

    #[test]
    fn scan_command_lines() {
        let cli = Cli::try_parse_from([
            "hub",
            "osdp",
            "scan",
            "--port",
            "/dev/pts/3",
            "--bauds",
            "9600,38400",
            "--addresses",
            "1-5",
            "--timeout-ms",
            "100",
        ])
        .unwrap();
        let HubCommand::Osdp(args) = cli.command else {
            panic!("not osdp");
        };
        let Some(osdp_cli::OsdpCommand::Scan(scan)) = args.command else {
            panic!("not a scan");
        };
        assert_eq!(scan.bauds, [9600, 38400]);
        assert_eq!(scan.addresses, "1-5");
        assert_eq!(scan.timeout_ms, 100);

        let cli = Cli::try_parse_from(["hub", "osdp", "scan", "--port", "/dev/x"]).unwrap();
        let HubCommand::Osdp(args) = cli.command else {
            panic!("not osdp");
        };
        let Some(osdp_cli::OsdpCommand::Scan(scan)) = args.command else {
            panic!("not a scan");
        };
        assert_eq!(scan.bauds, [9600, 19200, 38400, 57600, 115_200, 230_400]);
        assert_eq!(scan.addresses, "0-126");
        assert_eq!(scan.timeout_ms, 60);
    }
}
