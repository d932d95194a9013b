//! `hub run --config FILE`: the hub daemon, and `hub check-config`.
//!
//! [`run`] takes a checked [`Config`] and runs until SIGTERM or SIGINT:
//!
//! 1. opens the store ([`Store::open`]); a replaced (damaged) store becomes a
//!    `store_recovered` alarm event;
//! 2. loads the data set from the store, or, when the store has none, seeds
//!    it from `site.dataset_file` as a snapshot (revision 0); builds the
//!    [`View`] and shares it in a [`SharedView`];
//! 3. starts one bus task per `[[bus]]` ([`crate::bus::spawn`]) and one site
//!    task that runs the [`Site`] controller: bus events in; commands,
//!    decisions, refusals, alarms and device events out; timers; door modes
//!    refreshed every second (the same loop shape as [`crate::demo`]);
//! 4. serves `[api]`: the check endpoint ([`check_api::router`], entries
//!    recorded in the outbox before the answer) and the event list
//!    ([`events::router`]); and `[web]` on its own listener: the
//!    technician's page ([`web::router`]), fed by [`crate::status::HubStatus`]
//!    snapshots the site task publishes (each second and after changes),
//!    whose actions the site task carries out;
//! 5. prints `{"event":"ready","api":"ADDR","web":"ADDR"}` on stdout once
//!    serving and tells systemd `READY=1` ([`crate::notify`]); the site
//!    loop sends the watchdog pings;
//! 6. on SIGTERM/SIGINT (or [`RunOptions::stop_after`]) says `STOPPING=1`,
//!    stops serving, stops the site task and the buses,
//!    logs `hub_stopped`, flushes and closes the store, and returns `Ok`.
//!
//! Every decision, refusal, alarm and device event becomes a
//! [`HubEvent`] in the store's outbox ([`EventLog`]); each decision also
//! logs one tracing line (card masked, PINs never). The decision path reads
//! nothing from the store: decisions use the in-memory view, and an outbox
//! append is an in-memory sled insert made durable by group commit.
//!
//! # Where cloud sync plugs in
//!
//! [`Hub`] is what a sync task gets: [`Hub::replace_view`] swaps in a new
//! view (after a snapshot or change set was applied to the store), which
//! the HTTP check uses at once and the site task takes on its next turn;
//! [`Hub::log`] gives the outbox to read, send and acknowledge. Start such a
//! task next to the others in [`run`] (see the comment there) and stop it
//! with the same shutdown signal.
//!
//! With `[mqtt]`, [`run`] starts the sync ([`cloud::run_sync`]) with
//! [`commands`]' hooks: door and reader commands from the cloud go through
//! the site task's action queue (like the web page's), health comes from the
//! status snapshot, and the page's sync state from the driver's
//! [`hub_sync::LinkState`]. Lockdowns and door modes set by commands are
//! kept in the store's directory and applied again at start. A bus whose
//! port cannot be opened does not stop the daemon ([`bus::spawn_retrying`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use clap::Args;
use jiff::Timestamp;
use osdp::card::CardFormatTable;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::access::{self, DataSet, Decision, ModelError, View};
use crate::access_input::{InputConfig, ReaderId};
use crate::bus::{self, BusClient, BusError, BusEvent, BusHandle};
use crate::check_api::{self, CheckState, EntrySink, SharedView, SinkError};
use crate::cloud;
use crate::config::{self, Config, ConfigErrors};
use crate::dataset_file::{self, DataSetFileError};
use crate::door::DoorAlarm;
use crate::events::{self, EventError, EventKind, EventLog, HubEvent};
use crate::notify::{self, Watchdog};
use crate::site::{DeviceEvent, Effect, Site, SiteError};
use crate::site_data::{self, SiteDataError};
use crate::status::{HubStatus, StatusPublisher};
use crate::store::{Store, StoreError};
use crate::web::{self, ActionRequest, WebState};

pub mod commands;
mod panel;

/// `hub run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (TOML, see docs/config.md).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// `hub check-config` arguments.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The config file (TOML, see docs/config.md).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The config file has problems.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The store could not be opened or closed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The data set in the store could not be loaded or seeded.
    #[error("data set in the store: {0}")]
    SiteData(#[from] SiteDataError),
    /// The seed data set file could not be loaded.
    #[error(transparent)]
    DataSetFile(#[from] DataSetFileError),
    /// The stored data set does not build a view.
    #[error("stored data set: {0}")]
    Model(#[from] ModelError),
    /// A bus could not be started.
    #[error("bus {name}: {source}")]
    Bus {
        /// The bus's name.
        name: String,
        /// What failed.
        #[source]
        source: BusError,
    },
    /// The door wiring was refused by the site controller.
    #[error(transparent)]
    Site(#[from] SiteError),
    /// The cloud sync could not start (its TLS files, ids or URL).
    #[error("cloud sync: {0}")]
    Cloud(#[from] cloud::CloudError),
    /// An event could not be logged at start or stop.
    #[error("event log: {0}")]
    Events(#[from] EventError),
    /// Listening or serving HTTP failed, or the runtime could not start.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// `hub check-config`: prints `OK` and a summary (exit 0), or every problem
/// (exit 2).
pub fn check_config_main(args: &CheckConfigArgs) -> ExitCode {
    match config::load(&args.config) {
        Ok(config) => {
            println!("OK {}", args.config.display());
            for line in summary(&config) {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The short summary `check-config` prints.
pub fn summary(config: &Config) -> Vec<String> {
    let mut out = vec![format!(
        "site {} ({}){}",
        config.site.id,
        config.site.time_zone,
        config
            .site
            .dataset_file
            .as_ref()
            .map(|p| format!(", seed data set {}", p.display()))
            .unwrap_or_default()
    )];
    for (i, b) in config.buses.iter().enumerate() {
        let readers: Vec<&str> = config
            .readers
            .iter()
            .filter(|r| usize::from(r.id.bus) == i)
            .map(|r| r.name.as_str())
            .collect();
        out.push(format!(
            "bus {} on {} at {} baud{}: readers {}",
            b.name,
            if b.config.is_simulated() {
                "a simulated line (virtual readers)"
            } else {
                &b.config.port
            },
            b.config.baud,
            if b.config.rs485.is_some() {
                ", RS-485 mode"
            } else {
                ""
            },
            if readers.is_empty() {
                "none".to_owned()
            } else {
                readers.join(", ")
            }
        ));
    }
    for d in &config.doors {
        let name = |r: &ReaderId| config.reader_name(r).unwrap_or("?").to_owned();
        out.push(format!(
            "door {}: entry {}{}{}{}",
            d.door,
            name(&d.entry),
            d.exit
                .as_ref()
                .map(|r| format!(", exit {}", name(r)))
                .unwrap_or_default(),
            if d.position.is_some() {
                ", position switch"
            } else {
                ""
            },
            if d.rex.is_some() { ", exit button" } else { "" },
        ));
    }
    out.push(format!("storage {}", config.storage.path.display()));
    match &config.api {
        Some(api) => out.push(format!("api on {}", api.listen)),
        None => out.push("api off".into()),
    }
    if let Some(m) = &config.mqtt {
        out.push(format!("mqtt {} as {}/{}", m.url, m.tenant, m.hub_id));
    }
    if let Some(w) = &config.web {
        out.push(format!("web page on {} (user {})", w.listen, w.user));
    }
    out
}

/// `hub run`: loads the config, runs the daemon on a new runtime, returns
/// the exit code (0 after a clean stop, 2 for config errors, 1 otherwise).
pub fn run_main(args: &RunArgs) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| DaemonError::Io {
            context: "starting the tokio runtime".into(),
            source,
        })
        .and_then(|rt| rt.block_on(run(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub run: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the daemon's tasks share, and what a sync task will get.
#[derive(Debug)]
pub struct Hub {
    view: SharedView,
    view_changed: watch::Sender<()>,
    log: EventLog,
    /// The data set's own view (before command lockdowns) and the cloud
    /// commands' overrides: one lock, so a new data set and a lockdown
    /// command never interleave.
    base: Mutex<(Arc<View>, commands::Overrides)>,
    /// Where the overrides are kept (the store's directory).
    overrides_dir: PathBuf,
}

impl Hub {
    /// The current view (the HTTP check loads it per request).
    pub fn view(&self) -> &SharedView {
        &self.view
    }

    /// Swaps in a new view: the HTTP check uses it from the next request,
    /// the site task from its next turn. For sync after it applied a
    /// snapshot or change set to the store.
    pub fn replace_view(&self, view: Arc<View>) {
        let mut base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
        // One-time codes used since the new view was read from the store
        // stay used (the store has them too; see `record_code_use`).
        view.keep_code_uses_of(&base.0);
        // Command lockdowns stay in force over the new data set.
        base.1.apply(&view);
        self.view.store(Arc::clone(&view));
        base.0 = view;
        drop(base);
        self.view_changed.send_replace(());
    }

    /// Changes the cloud commands' overrides: saved first (nothing changes
    /// when that fails), then the view with the new lockdowns is swapped
    /// in. Returns the new overrides.
    pub(crate) fn update_overrides(
        &self,
        change: impl FnOnce(&mut commands::Overrides),
    ) -> std::io::Result<commands::Overrides> {
        let mut base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = base.1.clone();
        change(&mut next);
        if next != base.1 {
            next.save(&self.overrides_dir)?;
            next.apply(&base.0);
            base.1 = next.clone();
        }
        drop(base);
        self.view_changed.send_replace(());
        Ok(next)
    }

    /// A one-time access code was used at `at` (the site marked it in the
    /// view it decided on): marks it in the current view and in the data
    /// set's own view (the one the cloud sync reports statuses from; a
    /// different copy while a command lockdown is in force), then records
    /// it in the store, so it stays used after a restart or a new data
    /// set. Call before the CodeUsed event is appended: the append wakes
    /// the sync, which reports the code's new status then.
    pub(crate) fn record_code_use(
        &self,
        code: &access::AccessCodeId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        {
            // One view in force (command lockdowns are flags on it), which
            // the site task's decision already marked; this covers a use
            // recorded on a view that was replaced meanwhile.
            let base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
            base.0.record_code_use(code, at);
        }
        self.log
            .store()
            .record_code_use(code.as_str(), at.as_millisecond())
            .map(drop)
    }

    /// Whether the data set itself (not a command) puts `door` (`None`:
    /// the site) in lockdown.
    pub(crate) fn data_set_lockdown(&self, door: Option<&str>) -> bool {
        let base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
        let data = base.0.data();
        match door {
            None => data.site.lockdown,
            Some(d) => data.site.lockdown || base.0.door(d).is_some_and(|d| d.lockdown),
        }
    }

    /// The access log (the store's outbox).
    pub fn log(&self) -> &EventLog {
        &self.log
    }
}

/// Records the HTTP check's entries in the outbox before the answer.
struct OutboxSink(EventLog);

impl EntrySink for OutboxSink {
    fn record(&self, decision: Decision) -> Result<Option<u64>, SinkError> {
        let event = HubEvent::decision(&decision, None, None);
        match self.0.append(&event) {
            Ok(appended) => {
                info!(
                    seq = appended.seq,
                    door = %decision.door,
                    granted = decision.granted,
                    reason = %check_api::reason_code(&decision.reason),
                    "entry recorded (api)"
                );
                Ok(Some(appended.seq))
            }
            Err(EventError::Store(StoreError::OutboxFull { .. })) => Err(SinkError::Full),
            Err(e) => {
                warn!("entry not recorded: {e}");
                Err(SinkError::Failed)
            }
        }
    }
}

/// What `hub run` gets beyond its config: the demo's extras.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// More actions to carry out besides the web page's (the demo's typed
    /// lines and automatic cards).
    pub actions: Option<mpsc::Receiver<ActionRequest>>,
    /// Stop after this long, as on SIGTERM (the demo's `--seconds`).
    pub stop_after: Option<Duration>,
}

/// Runs the daemon until SIGTERM or SIGINT. See the module documentation.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    run_with(config, RunOptions::default()).await
}

/// [`run`] with the demo's extras.
pub async fn run_with(config: Config, options: RunOptions) -> Result<(), DaemonError> {
    let started = (Instant::now(), Timestamp::now());
    let (store, report) = Store::open(config.storage.clone())?;
    let store = Arc::new(store);
    let log = EventLog::new(Arc::clone(&store));
    log.append(&HubEvent::new(
        EventKind::HubStarted,
        format!("hub started (site {})", config.site.id),
    ))?;
    if report.needs_alarm() {
        warn!("the store was damaged and replaced; a full resync is needed");
        log.append(&HubEvent::new(
            EventKind::StoreRecovered,
            "the store was damaged and replaced at start",
        ))?;
    }
    if let Some(skipped) = &report.outbox_skipped {
        info!(
            from = skipped.start(),
            to = skipped.end(),
            "previous run did not stop cleanly; these event numbers are skipped"
        );
    }
    let (view, revision) = load_view(&config, &store, &log)?;
    let view = Arc::new(view);
    // The cloud sync shares this view (one in the process); none when the
    // store had no data set (the placeholder is not the store's).
    let mut stored_view = revision.map(|r| (Arc::clone(&view), r));
    let (view_changed, view_rx) = watch::channel(());
    // Lockdowns and door modes set by cloud commands before a restart.
    let overrides = commands::Overrides::load(&config.storage.path);
    if overrides != commands::Overrides::default() {
        info!(
            ?overrides,
            "lockdowns and door modes from cloud commands still in force"
        );
    }
    let hub = Arc::new(Hub {
        view: Arc::new(ArcSwap::new({
            overrides.apply(&view);
            Arc::clone(&view)
        })),
        view_changed,
        log: log.clone(),
        base: Mutex::new((view, overrides.clone())),
        overrides_dir: config.storage.path.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    // Buses and the site task.
    let mut site = Site::new(
        config.doors.clone(),
        InputConfig::default(),
        CardFormatTable::builtin(),
        hub.view.load_full(),
    )?;
    for r in &config.readers {
        site.configure_reader(r.id, r.input.clone())?;
    }
    for door in &overrides.held_unlocked {
        if let Err(e) = site.hold_unlocked(door, true, Timestamp::now(), Instant::now()) {
            warn!("door mode from a cloud command not restored: {e}");
        }
    }
    let (bus_tx, bus_rx) = mpsc::unbounded_channel();
    let mut handles: Vec<BusHandle> = Vec::new();
    for (i, b) in config.buses.iter().enumerate() {
        // A port missing at start (an adapter not plugged in yet) does not
        // stop the hub: the bus keeps trying, its readers show offline.
        let mut handle =
            bus::spawn_retrying(b.config.clone()).map_err(|source| DaemonError::Bus {
                name: b.name.clone(),
                source,
            })?;
        let bus_no = u16::try_from(i).unwrap_or(u16::MAX);
        let mut events = std::mem::replace(&mut handle.events, mpsc::channel(1).1);
        let tx = bus_tx.clone();
        // Forward into one unbounded queue: the site task may wait on a
        // bus's submit while that bus has events to hand over.
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if tx.send((bus_no, e)).is_err() {
                    break;
                }
            }
        });
        handles.push(handle);
    }
    let clients: Vec<BusClient> = handles.iter().map(BusHandle::client).collect();
    let (status, status_watch) = StatusPublisher::new(HubStatus::default());
    // Actions from the web page and the demo; a small queue: the page says
    // "busy" rather than piling up requests behind a slow bus.
    let (actions_tx, actions_rx) = mpsc::channel::<ActionRequest>(16);
    if let Some(mut extra) = options.actions {
        let tx = actions_tx.clone();
        tokio::spawn(async move {
            while let Some(request) = extra.recv().await {
                if tx.send(request).await.is_err() {
                    break;
                }
            }
        });
    }
    // Cloud sync: desired state down into the store, then a new view for
    // the doors and the HTTP check; the access log up, woken by each append.
    let sync = match &config.mqtt {
        Some(settings) => {
            let cloud_config = cloud::CloudConfig::from_settings(settings)?;
            let for_data = Arc::clone(&hub);
            let hooks = cloud::Hooks {
                // The sync built and checked the view from the store; the
                // same Arc serves the doors and the HTTP check.
                on_new_data: Box::new(move |view, revision| {
                    info!(revision, "new data set from the cloud in force");
                    for_data.replace_view(view);
                }),
                command: commands::command_hook(
                    actions_tx.clone(),
                    commands::Targets {
                        doors: config.doors.iter().map(|d| d.door.clone()).collect(),
                        readers: config.readers.iter().map(|r| r.name.clone()).collect(),
                    },
                    Arc::clone(&hub.view),
                ),
                health: commands::health_hook(status_watch.clone(), {
                    let store = Arc::clone(&store);
                    Arc::new(move || commands::outbox_alarms(store.outbox().status().level))
                }),
                ..cloud::Hooks::default()
            };
            let handle = cloud::run_sync_sharing(
                &cloud_config,
                Arc::clone(&store),
                stored_view.take(),
                hooks,
            )?;
            log.notify_on_append(handle.outbox_notifier());
            info!(
                url = %settings.url,
                tenant = %settings.tenant,
                hub = %settings.hub_id,
                "cloud sync started"
            );
            Some(handle)
        }
        None => None,
    };

    let mut panel = panel::Panel::new(&config, started, Arc::clone(&store));
    panel.link = sync.as_ref().map(|s| s.link());
    let site_task = tokio::spawn(site_loop(
        SiteTask {
            site,
            clients,
            readers: config
                .readers
                .iter()
                .map(|r| (r.id, r.name.clone()))
                .collect(),
            hub: Arc::clone(&hub),
            devices: DeviceStates::default(),
            status,
            panel,
        },
        Wakers {
            bus_events: bus_rx,
            _bus_tx: bus_tx,
            view_rx,
            actions: actions_rx,
            stop: stop_rx.clone(),
        },
    ));

    // HTTP.
    let mut ready = serde_json::json!({"event": "ready"});
    let mut servers = Vec::new();
    if let Some(api) = &config.api {
        let (listener, local) = listen(api.listen).await?;
        let state = CheckState::new(
            Arc::clone(&hub.view),
            api.api_key.clone(),
            Arc::new(OutboxSink(log.clone())),
        );
        let app = check_api::router(state).merge(events::router(log.clone(), api.api_key.clone()));
        info!(
            "serving http://{local}{} and {}",
            check_api::CHECK_PATH,
            events::EVENTS_PATH
        );
        ready["api"] = local.to_string().into();
        servers.push(serve(listener, app, stop_rx.clone()));
    }
    // The technician's web page: its own listener (another address, often
    // the LAN, while the check API may stay on localhost).
    if let Some(w) = &config.web {
        let (listener, local) = listen(w.listen).await?;
        let state = WebState::new(w.credentials.clone(), status_watch, actions_tx.clone());
        info!("web page on http://{local}/ (user {})", w.user);
        ready["web"] = local.to_string().into();
        servers.push(serve(listener, web::router(state), stop_rx.clone()));
    }
    drop(actions_tx);
    println!("{ready}");
    notify::ready();

    match options.stop_after {
        Some(after) => {
            tokio::select! {
                () = shutdown_signal() => {}
                () = tokio::time::sleep(after) => {}
            }
        }
        None => shutdown_signal().await,
    }
    info!("stopping");
    notify::stopping();
    stop_tx.send_replace(true);
    let mut result = Ok(());
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                result = Err(DaemonError::Io {
                    context: "serving HTTP".into(),
                    source,
                })
            }
            Err(e) => warn!("the HTTP task ended abnormally: {e}"),
        }
    }
    if let Err(e) = site_task.await {
        warn!("the site task ended abnormally: {e}");
    }
    for h in handles {
        h.shutdown().await;
    }
    log.append(&HubEvent::new(EventKind::HubStopped, "hub stopped"))?;
    if let Some(sync) = sync {
        // Says offline to the broker; unsent events stay in the outbox.
        sync.shutdown().await;
    }
    drop(hub);
    drop(log);
    match Arc::try_unwrap(store) {
        Ok(store) => store.close()?,
        // Something still holds it (cannot happen once the tasks are done):
        // flush at least.
        Err(store) => store.flush()?,
    }
    info!("stopped");
    result
}

/// Binds `addr`; returns the listener and the address it got (port 0).
async fn listen(
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), DaemonError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Io {
            context: format!("listening on {addr}"),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| DaemonError::Io {
        context: "reading the listening address".into(),
        source,
    })?;
    Ok((listener, local))
}

/// Serves `app` until `stop` turns true.
fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    })
}

/// The view from the store, seeded from the data set file when the store
/// has none, with the store's revision (`None`: the store has no data set
/// and the view is an empty placeholder).
fn load_view(
    config: &Config,
    store: &Store,
    log: &EventLog,
) -> Result<(View, Option<u64>), DaemonError> {
    // Straight from the store into the compact view: no full DataSet in
    // memory on the way (docs/benchmarks.md, decide_scale).
    let (view, revision) = match site_data::load_view(store) {
        Ok((view, revision)) => {
            info!(revision, "data set loaded from the store");
            (view, Some(revision))
        }
        Err(e) if e.needs_full_resync() => match &config.site.dataset_file {
            Some(path) => (seed(path, store, log)?, Some(0)),
            None => {
                warn!("no data set in the store and no site.dataset_file: every request is denied until one arrives");
                let placeholder = View::build(DataSet {
                    site: access::Site {
                        id: config.site.id.clone(),
                        time_zone: config.site.time_zone.clone(),
                        ..access::Site::default()
                    },
                    ..DataSet::default()
                })?;
                (placeholder, None)
            }
        },
        Err(e) => return Err(e.into()),
    };
    let data = view.data();
    if data.site.time_zone != config.site.time_zone {
        warn!(
            config = %config.site.time_zone,
            data_set = %data.site.time_zone,
            "the data set's time zone differs from the config's; schedules follow the data set"
        );
    }
    for d in &config.doors {
        if view.door(&d.door).is_none() {
            warn!(door = %d.door, "door is not in the data set: every credential is denied there");
        }
    }
    Ok((view, revision))
}

fn seed(path: &Path, store: &Store, log: &EventLog) -> Result<View, DaemonError> {
    let view = dataset_file::load(path)?;
    site_data::save_snapshot(store, view.data(), 0)?;
    info!(file = %path.display(), "store seeded from the data set file (revision 0)");
    log.append(&HubEvent::new(
        EventKind::DataSeeded,
        format!("data set seeded from {}", path.display()),
    ))?;
    Ok(view)
}

/// Resolves on SIGINT or SIGTERM (also the stop of `hub access serve`).
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// The site controller and what its effects need.
struct SiteTask {
    site: Site,
    clients: Vec<BusClient>,
    readers: Vec<(ReaderId, String)>,
    hub: Arc<Hub>,
    /// Tamper and power per device (only changes are logged).
    devices: DeviceStates,
    status: StatusPublisher,
    /// What the status page shows beyond the site, and the counters.
    panel: panel::Panel,
}

impl SiteTask {
    fn reader_name(&self, id: &ReaderId) -> Option<&str> {
        self.readers
            .iter()
            .find(|(r, _)| r == id)
            .map(|(_, n)| n.as_str())
    }

    fn device_name(&self, bus: u16, pd: u8) -> String {
        self.readers
            .iter()
            .find(|(r, _)| r.bus == bus && r.pd == pd)
            .map_or_else(|| format!("bus {bus} address {pd}"), |(_, n)| n.clone())
    }

    fn record(&mut self, event: &HubEvent) {
        if let Err(e) = self.hub.log.append(event) {
            // The door already acted; losing the log line is the lesser
            // harm. Not silent: counted (metrics, page) and warned, and a
            // full outbox is an `outbox_full` alarm in health.
            self.panel.counters.events_dropped += 1;
            warn!("event not recorded: {e}");
        }
    }

    async fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Command { bus, pd, command } => {
                let Some(client) = self.clients.get(usize::from(bus)) else {
                    return;
                };
                let name = command.name();
                if let Err(e) = client.submit(pd, command).await {
                    warn!(bus, pd, command = name, "command not sent: {e}");
                }
            }
            Effect::Decided {
                reader,
                credential,
                decision,
            } => {
                let name = self.reader_name(&reader);
                info!(
                    door = %decision.door,
                    reader = name.unwrap_or("?"),
                    granted = decision.granted,
                    reason = %check_api::reason_code(&decision.reason),
                    credential = credential.as_deref().unwrap_or("-"),
                    user = decision.user.as_ref().map_or("-", |u| u.id.as_str()),
                    "decision"
                );
                let event = HubEvent::decision(&decision, name, credential);
                if decision.granted {
                    self.panel.counters.granted += 1;
                } else {
                    self.panel.counters.denied += 1;
                }
                self.record(&event);
            }
            Effect::Refused { reader, door, why } => {
                self.panel.counters.denied += 1;
                let name = self.reader_name(&reader);
                info!(reader = name.unwrap_or("?"), door = door.as_deref().unwrap_or("-"), %why, "refused");
                let mut e = HubEvent::new(EventKind::Refused, why);
                e.reader = name.map(str::to_owned);
                e.door = door;
                e.granted = Some(false);
                self.record(&e);
            }
            Effect::CodeUsed { code, at } => {
                if let Err(e) = self.hub.record_code_use(&code, at) {
                    // The running views refuse the code; only a restart or
                    // a new data set before the store works again forgets.
                    warn!(code = %code.as_str(), "one-time code use not stored: {e}");
                }
                let mut e = HubEvent::new(
                    EventKind::CodeUsed,
                    format!("one-time access code {} used", code.as_str()),
                );
                e.at_ms = at.as_millisecond();
                self.record(&e);
            }
            Effect::Alarm {
                door,
                alarm,
                raised,
            } => {
                let what = match alarm {
                    DoorAlarm::ForcedOpen => "forced_open",
                    DoorAlarm::HeldOpen => "held_open",
                };
                if raised {
                    self.panel.counters.alarms += 1;
                }
                let (kind, verb) = if raised {
                    (EventKind::AlarmRaised, "raised")
                } else {
                    (EventKind::AlarmCleared, "cleared")
                };
                warn!(%door, alarm = what, "door alarm {verb}");
                let mut e = HubEvent::new(kind, format!("door {door}: {what} {verb}"));
                e.door = Some(door);
                e.reason = Some(what.to_owned());
                self.record(&e);
            }
            Effect::Device { bus, pd, event } => {
                let what = match event {
                    DeviceEvent::Online => "online",
                    DeviceEvent::Offline => "offline",
                    DeviceEvent::Tamper(true) => "tamper",
                    DeviceEvent::Tamper(false) => "tamper_cleared",
                    DeviceEvent::PowerFailure(true) => "power_failure",
                    DeviceEvent::PowerFailure(false) => "power_ok",
                };
                let name = self.device_name(bus, pd);
                info!(device = %name, event = what, "device");
                let mut e = HubEvent::new(EventKind::Device, format!("{name}: {what}"));
                e.reader = Some(name);
                e.reason = Some(what.to_owned());
                self.record(&e);
            }
        }
    }

    fn port_event(&mut self, bus: u16, event: &BusEvent) {
        let readers: Vec<&str> = self
            .readers
            .iter()
            .filter(|(r, _)| r.bus == bus)
            .map(|(_, n)| n.as_str())
            .collect();
        let (what, message) = match event {
            BusEvent::PortLost { port, error } if readers.is_empty() => {
                ("port_lost", format!("{port}: {error}"))
            }
            BusEvent::PortLost { port, error } => (
                "port_lost",
                format!("{port}: {error}; offline: {}", readers.join(", ")),
            ),
            BusEvent::PortReopened { port } => ("port_reopened", format!("{port} reopened")),
            BusEvent::Osdp(_) => return,
        };
        let mut e = HubEvent::new(EventKind::Device, message);
        e.reason = Some(what.to_owned());
        e.reader = Some(format!("bus {bus}"));
        self.record(&e);
    }
}

/// Device tamper/power reports repeat on every status reply; log changes only.
#[derive(Default)]
struct DeviceStates(std::collections::HashMap<(u16, u8), (Option<bool>, Option<bool>)>);

impl DeviceStates {
    /// The device's tamper switch is open (last report).
    fn tamper(&self, bus: u16, pd: u8) -> bool {
        self.0.get(&(bus, pd)).and_then(|s| s.0).unwrap_or(false)
    }

    /// Whether `effect` is news (always true for non-device effects).
    fn is_news(&mut self, effect: &Effect) -> bool {
        let Effect::Device { bus, pd, event } = effect else {
            return true;
        };
        let state = self.0.entry((*bus, *pd)).or_default();
        match event {
            DeviceEvent::Tamper(t) => state.0.replace(*t) != Some(*t),
            DeviceEvent::PowerFailure(p) => {
                // "Power fine" on first sight is not news.
                let before = state.1.replace(*p);
                before.map_or(*p, |b| b != *p)
            }
            DeviceEvent::Online | DeviceEvent::Offline => true,
        }
    }
}

/// What wakes the site task.
struct Wakers {
    bus_events: mpsc::UnboundedReceiver<(u16, BusEvent)>,
    /// Keeps the queue open when there are no buses.
    _bus_tx: mpsc::UnboundedSender<(u16, BusEvent)>,
    view_rx: watch::Receiver<()>,
    /// The web page's and the demo's actions.
    actions: mpsc::Receiver<ActionRequest>,
    stop: watch::Receiver<bool>,
}

async fn site_loop(mut task: SiteTask, wakers: Wakers) {
    let Wakers {
        mut bus_events,
        _bus_tx,
        mut view_rx,
        mut actions,
        mut stop,
    } = wakers;
    const REFRESH: Duration = Duration::from_secs(1);
    let mut next_refresh = Instant::now();
    let mut watchdog = Watchdog::from_env(Instant::now());
    let mut actions_open = true;
    loop {
        // Only a loop that turns pings systemd: a stuck one gets restarted.
        watchdog.tick(Instant::now());
        let mut changed = false;
        while let Some(effect) = task.site.poll_effect() {
            changed = true;
            if task.devices.is_news(&effect) {
                task.apply(effect).await;
            }
        }
        let now = Instant::now();
        if now >= next_refresh {
            task.site.refresh_modes(Timestamp::now(), now);
            next_refresh = now + REFRESH;
            task.publish_status(true).await;
            continue;
        }
        if changed {
            task.publish_status(false).await;
        }
        let wake = [task.site.poll_timeout(), watchdog.due()]
            .into_iter()
            .flatten()
            .fold(next_refresh, Instant::min);
        tokio::select! {
            event = bus_events.recv() => match event {
                Some((bus, BusEvent::Osdp(e))) => {
                    task.site.handle_bus_event(bus, &e, Instant::now(), Timestamp::now());
                }
                Some((bus, other)) => task.port_event(bus, &other),
                None => return,
            },
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                task.site.handle_timeout(Instant::now(), Timestamp::now());
            }
            changed = view_rx.changed() => {
                if changed.is_ok() {
                    task.site.set_view(task.hub.view.load_full());
                }
            }
            request = actions.recv(), if actions_open => match request {
                Some(request) => {
                    task.act(request).await;
                    task.publish_status(false).await;
                }
                None => actions_open = false,
            },
            () = stopped(&mut stop) => return,
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone). Returns `()`
/// so no watch guard lives across the site loop's awaits.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{decide, decide_entry, fixture, Direction, Pin, Request};
    use crate::store::StoreConfig;

    #[test]
    fn a_one_time_code_used_at_a_door_is_refused_by_every_view_and_stored() {
        let dir = tempfile::TempDir::new().unwrap();
        let config = StoreConfig::new(dir.path().join("store"));
        let store = Arc::new(Store::open(config).unwrap().0);
        let base = Arc::new(View::build(fixture::data()).unwrap());
        // A command lockdown at the back door: a flag on the one view, not
        // a copy of it.
        let overrides = commands::Overrides {
            door_lockdown: ["back".to_owned()].into(),
            ..commands::Overrides::default()
        };
        overrides.apply(&base);
        let (view_changed, _rx) = watch::channel(());
        let hub = Hub {
            view: Arc::new(ArcSwap::new(Arc::clone(&base))),
            view_changed,
            log: EventLog::new(Arc::clone(&store)),
            base: Mutex::new((Arc::clone(&base), overrides)),
            overrides_dir: dir.path().to_owned(),
        };
        let shared = hub.view().load_full();
        assert!(Arc::ptr_eq(&shared, &base));

        // The site decides on the shared view and marks the code there.
        let request = Request::pin("front", Direction::In, Pin::parse("8642").unwrap());
        let now = fixture::now();
        let first = decide_entry(&request, &shared, now);
        assert!(first.granted && first.code_consumed);
        assert!(!decide_entry(&request, &shared, now).granted);
        // A new data set read from the store before the use was stored
        // arrives between the decision and its CodeUsed effect...
        hub.replace_view(Arc::new(View::build(fixture::data()).unwrap()));
        assert!(!decide(&request, &hub.view().load(), now).granted);
        // ...and the effect marks whatever view is in force, and the store.
        hub.record_code_use(&"code-once".into(), first.at).unwrap();
        assert!(!decide(&request, &hub.view().load(), now).granted);
        assert_eq!(
            store.code_uses().unwrap(),
            [("code-once".to_owned(), first.at.as_millisecond())]
        );
        // The lockdown lifted: still used.
        hub.update_overrides(|o| o.door_lockdown.clear()).unwrap();
        assert!(!decide(&request, &hub.view().load(), now).granted);
        // A view built without the use (a revision read before the store
        // write) takes it over from the view it replaces.
        hub.replace_view(Arc::new(View::build(fixture::data()).unwrap()));
        assert!(!decide(&request, &hub.view().load(), now).granted);
    }
}
