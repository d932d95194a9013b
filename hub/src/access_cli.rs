//! `hub access`: the decision engine without the cloud or readers.
//!
//! - `hub access check`: one decision from a data-set file
//!   ([`crate::dataset_file`]), printed as one JSON object in the door
//!   access API's shape ([`check_api::response_json`]). Exit code 0 when
//!   granted, 1 when denied, 2 on errors.
//! - `hub access serve`: the HTTP check endpoint ([`check_api::router`]) on
//!   a data-set file. Entries of checks with `check_only: false` are logged
//!   to stderr, not stored.
//!
//! See `docs/access-check.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::{Args, Subcommand, ValueEnum};
use jiff::Timestamp;
use thiserror::Error;

use crate::access::{self, CardNumber, CheckQuery, Direction, Pin, Presented, Request};
use crate::check_api::{self, ApiKey, ApiKeyError, CheckState};
use crate::dataset_file::{self, DataSetFileError};

/// `hub access` arguments.
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AccessCommand,
}

/// `hub access` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Decide one request from a data-set file and print the answer as
    /// JSON. Exit code 0 granted, 1 denied, 2 error.
    Check(CheckArgs),
    /// Serve the HTTP check endpoint (POST /api/v1/access/check) on a
    /// data-set file.
    Serve(ServeArgs),
}

/// Which way through the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// Entering.
    In,
    /// Leaving.
    Out,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Self {
        match d {
            DirectionArg::In => Direction::In,
            DirectionArg::Out => Direction::Out,
        }
    }
}

/// `hub access check` arguments. Identify the user either as the door
/// access API does (`--id`, `--door-access-id`, `--barcode-id`: all given
/// must match one user) or as a reader does (`--card`, `--pin`, or both for
/// card then PIN).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("who").required(true).multiple(true)
    .args(["id", "door_access_id", "barcode_id", "card", "pin"]))]
pub struct CheckArgs {
    /// Data-set file (JSON, see docs/dataset-format.md).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Door id.
    #[arg(long)]
    pub door: String,
    /// User id (door access API `id`).
    #[arg(long, conflicts_with_all = ["card", "pin"])]
    pub id: Option<String>,
    /// Door access API `door_access_id`.
    #[arg(long, value_name = "VALUE", conflicts_with_all = ["card", "pin"])]
    pub door_access_id: Option<String>,
    /// Door access API `barcode_id`.
    #[arg(long, value_name = "VALUE", conflicts_with_all = ["card", "pin"])]
    pub barcode_id: Option<String>,
    /// A card as a reader decodes it: `FACILITY:NUMBER` or `NUMBER`.
    #[arg(long, value_name = "FACILITY:NUMBER|NUMBER")]
    pub card: Option<String>,
    /// A PIN typed at the keypad (never printed back).
    #[arg(long)]
    pub pin: Option<String>,
    /// Direction (reader requests only; a check has none).
    #[arg(long, value_enum, default_value_t = DirectionArg::In)]
    pub direction: DirectionArg,
    /// When to decide, RFC 3339 (`2026-06-03T10:00:00+02:00`); default now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
}

/// `hub access serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data-set file (JSON, see docs/dataset-format.md).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// File holding the API key (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: PathBuf,
}

/// Why `hub access` failed (exit code 2).
#[derive(Debug, Error)]
pub enum AccessCliError {
    /// The data-set file could not be loaded.
    #[error(transparent)]
    DataSet(#[from] DataSetFileError),
    /// `--card` is not `FACILITY:NUMBER` or `NUMBER`.
    #[error("--card: expected FACILITY:NUMBER or NUMBER (decimal)")]
    Card,
    /// `--pin` is not 1 to 16 digits.
    #[error("--pin: {0}")]
    Pin(#[from] access::PinError),
    /// `--at` is not an RFC 3339 time stamp.
    #[error("--at: expected an RFC 3339 time such as 2026-06-03T10:00:00+02:00: {0}")]
    At(jiff::Error),
    /// The API key file could not be read.
    #[error("{path}: cannot read the API key file: {source}")]
    ApiKeyFile {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The API key file holds no usable key.
    #[error("{path}: {source}")]
    ApiKey {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ApiKeyError,
    },
    /// Writing the answer, or the server, failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// How `hub access` ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The check granted (exit code 0).
    Granted,
    /// The check denied (exit code 1).
    Denied,
    /// The server stopped (exit code 0).
    Stopped,
}

impl Outcome {
    /// 0 for granted or stopped, 1 for denied.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Granted | Outcome::Stopped => ExitCode::SUCCESS,
            Outcome::Denied => ExitCode::from(1),
        }
    }
}

/// Runs `hub access` and returns the process exit code: 0 granted (or the
/// server stopped), 1 denied, 2 on errors (printed to stderr).
pub fn main(args: AccessArgs) -> ExitCode {
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(source) => Err(AccessCliError::Io {
            context: "starting the tokio runtime".into(),
            source,
        }),
    };
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("hub access: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `hub access`.
pub async fn run(args: AccessArgs) -> Result<Outcome, AccessCliError> {
    match args.command {
        AccessCommand::Check(args) => {
            let (answer, granted) = check(&args, Timestamp::now())?;
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{answer}").map_err(|source| AccessCliError::Io {
                context: "writing the answer".into(),
                source,
            })?;
            Ok(if granted {
                Outcome::Granted
            } else {
                Outcome::Denied
            })
        }
        AccessCommand::Serve(args) => serve(args).await.map(|()| Outcome::Stopped),
    }
}

/// Parses `FACILITY:NUMBER` or `NUMBER` (decimal).
pub fn parse_card(text: &str) -> Result<CardNumber, AccessCliError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match text.split_once(':') {
        Some((facility, number)) if digits(facility) && digits(number) => Ok(CardNumber::new(
            Some(facility.parse().map_err(|_| AccessCliError::Card)?),
            number.parse().map_err(|_| AccessCliError::Card)?,
        )),
        None if digits(text) => Ok(CardNumber::new(
            None,
            text.parse().map_err(|_| AccessCliError::Card)?,
        )),
        _ => Err(AccessCliError::Card),
    }
}

/// Decides `hub access check` at `now` (unless `--at` is given): the
/// answer as JSON and whether it granted.
pub fn check(
    args: &CheckArgs,
    now: Timestamp,
) -> Result<(serde_json::Value, bool), AccessCliError> {
    let at = match &args.at {
        Some(text) => text.parse::<Timestamp>().map_err(AccessCliError::At)?,
        None => now,
    };
    let card = args.card.as_deref().map(parse_card).transpose()?;
    let pin = args.pin.as_deref().map(Pin::parse).transpose()?;
    let view = dataset_file::load(&args.data)?;
    let direction = args.direction.into();
    let presented = match (card, pin) {
        (Some(card), Some(pin)) => Presented::CardAndPin { card, pin },
        (Some(card), None) => Presented::Card(card),
        (None, Some(pin)) => Presented::Pin(pin),
        (None, None) => Presented::Check(CheckQuery {
            id: args.id.as_deref(),
            door_access_id: args.door_access_id.as_deref(),
            barcode_id: args.barcode_id.as_deref(),
            // The command records nothing.
            check_only: true,
        }),
    };
    let decision = access::decide(&Request::new(&args.door, direction, presented), &view, at);
    Ok((check_api::response_json(&decision, &view), decision.granted))
}

async fn serve(args: ServeArgs) -> Result<(), AccessCliError> {
    let view = dataset_file::load(&args.data)?;
    let key_text = zeroize::Zeroizing::new(std::fs::read_to_string(&args.api_key_file).map_err(
        |source| AccessCliError::ApiKeyFile {
            path: args.api_key_file.clone(),
            source,
        },
    )?);
    let api_key = ApiKey::new(&key_text).map_err(|source| AccessCliError::ApiKey {
        path: args.api_key_file.clone(),
        source,
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<access::Decision>(1024);
    // Standalone: entries are logged, not stored.
    tokio::spawn(async move {
        while let Some(decision) = rx.recv().await {
            tracing::info!("entry: {decision}");
        }
    });
    let state = CheckState::new(Arc::new(ArcSwap::from_pointee(view)), api_key, Arc::new(tx));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| AccessCliError::Io {
            context: format!("listening on {}", args.listen),
            source,
        })?;
    tracing::info!(
        "serving POST http://{}{}",
        args.listen,
        check_api::CHECK_PATH
    );
    axum::serve(listener, check_api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| AccessCliError::Io {
            context: "serving".into(),
            source,
        })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    crate::daemon::shutdown_signal().await;
    tracing::info!("stopping");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, HubCommand};
    use clap::Parser;

    fn example() -> String {
        format!("{}/examples/data/site.json", env!("CARGO_MANIFEST_DIR"))
    }

    fn check_args(extra: &[&str]) -> Result<CheckArgs, clap::Error> {
        let data = example();
        let mut argv = vec!["hub", "access", "check", "--data", &data];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv)?;
        let HubCommand::Access(AccessArgs {
            command: AccessCommand::Check(args),
        }) = cli.command
        else {
            panic!("not access check");
        };
        Ok(args)
    }

    const AT: &str = "2026-06-03T10:00:00+02:00";

    #[test]
    fn check_by_id_prints_the_api_shape() {
        let args = check_args(&["--door", "front", "--id", "201", "--at", AT]).unwrap();
        let (json, granted) = check(&args, Timestamp::UNIX_EPOCH).unwrap();
        assert!(granted);
        assert_eq!(json["success"], true);
        assert_eq!(json["reason"], "membership");
        assert_eq!(json["user"]["memberships"][0]["door_ids"][0], "front");
    }

    #[test]
    fn card_and_pin_never_print_the_secrets() {
        // Bob's card then PIN at the back door, inside the schedule.
        let args = check_args(&[
            "--door", "back", "--card", "7:1001", "--pin", "4321", "--at", AT,
        ])
        .unwrap();
        let (json, granted) = check(&args, Timestamp::UNIX_EPOCH).unwrap();
        assert!(granted, "{json}");
        assert_eq!(json["reason"], "access");
        let text = json.to_string();
        assert!(!text.contains("4321") && !text.contains("1001"), "{text}");

        // A card alone is not enough to enter there.
        let args = check_args(&["--door", "back", "--card", "7:1001", "--at", AT]).unwrap();
        let (json, granted) = check(&args, Timestamp::UNIX_EPOCH).unwrap();
        assert!(!granted);
        assert_eq!(json["reason"], "auth_type_not_allowed");

        // An unknown card is masked.
        let args = check_args(&["--door", "back", "--card", "55512345", "--at", AT]).unwrap();
        let (json, _) = check(&args, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(json["message"], "unknown card ****2345");
        assert!(json["user"].is_null());
    }

    #[test]
    fn access_code_and_schedule() {
        let args = check_args(&["--door", "back", "--pin", "2468", "--at", AT]).unwrap();
        let (json, granted) = check(&args, Timestamp::UNIX_EPOCH).unwrap();
        assert!(granted, "{json}");
        assert_eq!(json["reason"], "access_code");
        // Saturday: Bob's weekday schedule is closed.
        let args = check_args(&[
            "--door",
            "front",
            "--card",
            "7:1001",
            "--at",
            "2026-06-06T10:00:00+02:00",
        ])
        .unwrap();
        let (json, granted) = check(&args, Timestamp::UNIX_EPOCH).unwrap();
        assert!(!granted);
        assert_eq!(json["reason"], "outside_schedule");
    }

    #[test]
    fn bad_arguments() {
        // Nothing to identify the user with, or both kinds.
        assert!(check_args(&["--door", "front"]).is_err());
        assert!(check_args(&["--door", "front", "--id", "1", "--card", "5"]).is_err());
        for (flag, value) in [("--card", "12:ab"), ("--card", ":5"), ("--pin", "12a")] {
            let args = check_args(&["--door", "front", flag, value]).unwrap();
            assert!(
                check(&args, Timestamp::UNIX_EPOCH).is_err(),
                "{flag} {value}"
            );
        }
        let args = check_args(&["--door", "front", "--id", "1", "--at", "tomorrow"]).unwrap();
        let err = check(&args, Timestamp::UNIX_EPOCH).unwrap_err();
        assert!(matches!(err, AccessCliError::At(_)), "{err}");
        let err_text = format!(
            "{}",
            check(
                &check_args(&["--door", "front", "--pin", "12x4"]).unwrap(),
                Timestamp::UNIX_EPOCH
            )
            .unwrap_err()
        );
        assert!(!err_text.contains("12x4"), "{err_text}");
    }

    #[test]
    fn serve_command_line() {
        let cli = Cli::try_parse_from([
            "hub",
            "access",
            "serve",
            "--data",
            "site.json",
            "--api-key-file",
            "key",
        ])
        .unwrap();
        let HubCommand::Access(AccessArgs {
            command: AccessCommand::Serve(args),
        }) = cli.command
        else {
            panic!("not serve");
        };
        assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
    }
}
