//! The runtime: the only part of imrelay that touches glommio, sockets, clocks and signals.
//!
//! [`serve`] binds every socket on the main thread (so a bad address fails the start with a
//! clear error), starts one glommio executor per configured CPU, pinned, waits until every
//! shard reports ready (mesh joined, every peer answered a ping, listeners running), tells
//! systemd, then supervises: it pings systemd's watchdog only while every shard's heartbeat
//! advances, and on SIGTERM/SIGINT lets the shards finish in-flight work within the grace
//! period and collects their counters over the mesh.

pub mod mesh;
pub(crate) mod msrp;
pub mod sd_notify;
mod shard_task;
pub mod sockets;
pub mod store;
pub mod system;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{Config, SipTransport};
use crate::limits::MESH_CHANNEL_MESSAGES_MAX;
use crate::shard::ShardStats;
pub use system::StartError;

/// How long a shard may take to come up before the start is declared failed.
const SHARD_START_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the supervisor looks at the stop flag and the heartbeats.
const SUPERVISOR_TICK: Duration = Duration::from_millis(50);

/// What a finished `serve` reports.
#[derive(Debug, Clone, Default)]
pub struct ServeReport {
    /// Counters summed over every shard (collected by shard 0 over the mesh).
    pub totals: ShardStats,
    /// Counters of each shard, in shard order.
    pub per_shard: Vec<ShardStats>,
    /// The store's counters summed over every shard.
    pub store: store::StoreStats,
}

/// What every shard gets from the supervisor.
pub(crate) struct ShardSetup {
    pub index: usize,
    pub shards: usize,
    pub udp_fd: Option<std::os::fd::RawFd>,
    pub tcp_fd: Option<std::os::fd::RawFd>,
    pub identity: crate::config::Identity,
    pub seed: u64,
    pub stop: Arc<AtomicBool>,
    pub heartbeat: Arc<AtomicU64>,
    pub grace: Duration,
    pub ready: crossbeam::channel::Sender<Result<(), String>>,
    pub mesh: glommio::channels::channel_mesh::MeshBuilder<
        mesh::ShardMsg,
        glommio::channels::channel_mesh::Full,
    >,
    /// This shard's partition of the deferred store, recovered on the main thread.
    pub store: crate::store::fs::FsStore,
    pub pager: crate::config::PagerConfig,
    /// The key of flow tokens, one for the whole process.
    pub flow_key: std::collections::hash_map::RandomState,
    /// This shard's MSRP listener, and the `host:port` its URIs name.
    pub msrp_fd: Option<std::os::fd::RawFd>,
    pub msrp_authority: String,
    pub msrp_credentials: crate::msrp::auth::Credentials,
    /// An MSRP connection idle this long is closed.
    pub msrp_idle: std::time::Duration,
}

/// Something the running server says on stdout (the loopback tests read these lines).
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "imrelay: {line}");
    let _ = out.flush();
}

/// Runs the server until SIGTERM/SIGINT. Returns once every shard has stopped.
pub fn serve(cfg: &Config) -> Result<ServeReport, StartError> {
    serve_with_reload(cfg, None)
}

/// Reads the configuration again (on `SIGHUP`).
pub type Reload<'a> = &'a dyn Fn() -> Result<Config, crate::config::ConfigError>;

/// [`serve`], and on `SIGHUP` the configuration is read again with `reload`: the group
/// role's groups are replaced (a configuration that does not load changes nothing, and says
/// why on stderr). Other settings need a restart.
pub fn serve_with_reload(
    cfg: &Config,
    reload: Option<Reload<'_>>,
) -> Result<ServeReport, StartError> {
    let allowed = system::allowed_cpus()?;
    let cpus = cfg
        .server
        .cores
        .resolve(&allowed)
        .map_err(StartError::Config)?;
    system::check_memlock()?;
    std::fs::create_dir_all(&cfg.server.state_dir).map_err(|error| StartError::StateDir {
        path: cfg.server.state_dir.clone(),
        error,
    })?;
    let (_store_lock, mut stores) = open_store(cfg, cpus.len())?;
    let udp = cfg.server.transports.contains(&SipTransport::Udp);
    let tcp = cfg.server.transports.contains(&SipTransport::Tcp);
    let (sockets, bound) = sockets::bind_sip(cfg.server.sip_addr, cpus.len(), udp, tcp)?;
    let msrp_sockets = sockets::bind_msrp(bound.ip(), cfg.server.msrp_port, cpus.len())?;
    let msrp_ports: Vec<u16> = msrp_sockets.iter().map(|&(_, p)| p).collect();

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(StartError::Signals)?;
    }
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))
        .map_err(StartError::Signals)?;
    let notifier =
        sd_notify::Notifier::from_env().map_err(|e| StartError::Notify(e.to_string()))?;
    let watchdog = sd_notify::watchdog_interval().map_err(|e| StartError::Notify(e.to_string()))?;

    let mut identity = cfg.identity();
    identity.addr = bound;
    let mesh =
        glommio::channels::channel_mesh::MeshBuilder::full(cpus.len(), MESH_CHANNEL_MESSAGES_MAX);
    let heartbeats: Vec<Arc<AtomicU64>> = (0..cpus.len())
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let grace = Duration::from_millis(cfg.server.shutdown_grace_ms);

    let flow_key = std::collections::hash_map::RandomState::new();
    let mut handles = Vec::with_capacity(cpus.len());
    let mut readies = Vec::with_capacity(cpus.len());
    let mut failure: Option<StartError> = None;
    let mut msrp = msrp_sockets.iter().copied();
    for (index, (&cpu, socks)) in cpus.iter().zip(sockets).enumerate() {
        let Some((msrp_fd, msrp_port)) = msrp.next() else {
            break;
        };
        let Some(store) = stores.next() else {
            break;
        };
        let (ready_tx, ready_rx) = crossbeam::channel::bounded(1);
        let setup = ShardSetup {
            index,
            shards: cpus.len(),
            udp_fd: socks.udp,
            tcp_fd: socks.tcp,
            identity: identity.clone(),
            seed: random_seed(),
            stop: Arc::clone(&stop),
            heartbeat: Arc::clone(&heartbeats[index]),
            grace,
            ready: ready_tx,
            mesh: mesh.clone(),
            store,
            pager: cfg.pager.clone(),
            flow_key: flow_key.clone(),
            msrp_fd: Some(msrp_fd),
            msrp_credentials: cfg.msrp_credentials(flow_key.clone()),
            msrp_idle: std::time::Duration::from_secs(cfg.msrp.idle_secs()),
            msrp_authority: match bound.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]:{msrp_port}"),
                ip => format!("{ip}:{msrp_port}"),
            },
        };
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("imrelay-shard-{index}"));
        if cfg.server.detect_stalls {
            builder =
                builder.detect_stalls(Some(Box::new(glommio::DefaultStallDetectionHandler {})));
        }
        let spawned = builder.spawn(move || shard_task::run(setup));
        match spawned {
            Ok(h) => {
                handles.push((index, cpu, h));
                readies.push((index, cpu, ready_rx));
            }
            Err(e) => {
                failure = Some(system::executor_error(index, cpu, e.to_string()));
                break;
            }
        }
    }

    // Wait for every shard to report ready. A shard whose executor died never reports: its
    // sender is dropped and the error comes from its join handle.
    if failure.is_none() {
        // Whichever shard reports first — ready, failed, or gone — is handled first, so a
        // shard that dies is named even while the others wait for it in the mesh.
        let deadline = Instant::now() + SHARD_START_TIMEOUT;
        let mut waiting: Vec<usize> = (0..readies.len()).collect();
        while !waiting.is_empty() {
            let mut sel = crossbeam::channel::Select::new();
            for &i in &waiting {
                sel.recv(&readies[i].2);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(op) = sel.select_timeout(left) else {
                let (index, cpu, _) = &readies[waiting[0]];
                failure = Some(StartError::Executor {
                    shard: *index,
                    cpu: *cpu,
                    detail: format!("not ready within {SHARD_START_TIMEOUT:?}"),
                });
                break;
            };
            let slot = op.index();
            let i = waiting[slot];
            let (index, cpu, rx) = &readies[i];
            match op.recv(rx) {
                Ok(Ok(())) => {
                    waiting.remove(slot);
                }
                Ok(Err(detail)) => {
                    failure = Some(system::executor_error(*index, *cpu, detail));
                    break;
                }
                Err(_) => {
                    failure = Some(system::executor_error(
                        *index,
                        *cpu,
                        "executor exited before it was ready".into(),
                    ));
                    break;
                }
            }
        }
    }
    if let Some(mut err) = failure {
        stop.store(true, Ordering::SeqCst);
        for (index, cpu, h) in handles {
            if let Err(e) = h.join() {
                // The executor's own error says more than "exited before ready".
                if matches!(&err, StartError::Executor { shard, .. } if *shard == index) {
                    err = system::executor_error(index, cpu, e.to_string());
                }
            }
        }
        return Err(err);
    }

    let transports = match (udp, tcp) {
        (true, true) => "udp+tcp",
        (true, false) => "udp",
        _ => "tcp",
    };
    announce(&format!(
        "ready: sip {transports} {bound}, {} shard(s) on CPUs {cpus:?}, state {}, msrp ports {}",
        cpus.len(),
        cfg.server.state_dir.display(),
        msrp_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    ));
    tracing::info!(%bound, shards = cpus.len(), "ready");
    if let Some(n) = &notifier {
        let _ = n.status(&format!(
            "serving SIP on {bound} with {} shards",
            cpus.len()
        ));
        let _ = n.ready();
    }

    let groups = identity.groups.clone();
    let on_hangup = || {
        let Some(reload) = reload else {
            tracing::warn!("SIGHUP: no configuration file to read again");
            return;
        };
        match reload() {
            Ok(new) => {
                // Groups are named as the shards name users: by the domains they started
                // with, and kept only with the group role on since the start (other
                // settings need a restart).
                let table = if cfg.roles.group.enabled {
                    new.groups_named_by(&identity)
                } else {
                    crate::config::Groups::new()
                };
                let n = table.len();
                groups.replace(table);
                tracing::info!(groups = n, "configuration reloaded");
                announce(&format!("reloaded: {n} group(s)"));
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: configuration not reloaded");
                eprintln!("imrelay: configuration not reloaded: {e}");
            }
        }
    };
    supervise(
        &stop,
        &heartbeats,
        notifier.as_ref(),
        watchdog,
        (&hangup, &on_hangup),
    );
    if let Some(n) = &notifier {
        let _ = n.stopping();
    }

    let mut report = ServeReport {
        per_shard: vec![ShardStats::default(); handles.len()],
        ..Default::default()
    };
    for (index, cpu, h) in handles {
        match h.join() {
            Ok(r) => {
                report.per_shard[index] = r.own;
                if let Some(t) = r.totals {
                    report.totals = t;
                }
                if let Some(t) = r.store_totals {
                    report.store = t;
                }
            }
            Err(e) => tracing::error!(shard = index, cpu, error = %e, "shard ended with an error"),
        }
    }
    announce(&format!(
        "stopped: {} requests, {} responses sent, {} malformed, {} retransmissions absorbed, \
         {} handed to their owner shard, {} messages stored, {} bridges and {} dialogs open",
        report.totals.requests,
        report.totals.responses_sent,
        report.totals.malformed,
        report.totals.retransmissions_absorbed,
        report.totals.handoffs_out,
        report.store.stored,
        report.totals.bridges,
        report.totals.dialogs
    ));
    Ok(report)
}

/// Takes the store's lock, replays every journal, and recovers one partition per shard (on
/// this thread, before any shard starts); announces what was found.
fn open_store(
    cfg: &Config,
    shards: usize,
) -> Result<
    (
        crate::store::fs::Prepared,
        impl Iterator<Item = crate::store::fs::FsStore>,
    ),
    StartError,
> {
    use crate::store::fs::{prepare, FsStore, Partition};
    let dir = &cfg.server.state_dir;
    let err = |error| StartError::Store {
        path: dir.clone(),
        error,
    };
    let prepared = prepare(dir).map_err(err)?;
    let mut parts = Vec::with_capacity(shards);
    let mut total = crate::store::fs::RecoveryReport {
        journal_entries: prepared.journal_entries,
        ..Default::default()
    };
    for index in 0..shards {
        let part = Partition {
            index,
            count: shards,
        };
        let (store, r) =
            FsStore::open_partition(dir, &prepared, part, cfg.store.policy(), random_seed())
                .map_err(err)?;
        total.add(&r);
        parts.push(store);
    }
    announce(&format!(
        "store: {} messages pending in {} segments ({} bytes), {} torn tails cut, {} corrupt \
         regions skipped, {} journal entries redone, recovered in {} ms",
        total.pending_messages,
        total.segments,
        total.bytes,
        total.torn_tails,
        total.corrupt,
        total.journal_entries,
        total.elapsed.as_millis()
    ));
    Ok((prepared, parts.into_iter()))
}

/// Waits for the stop flag; meanwhile pings systemd's watchdog only while every shard's
/// heartbeat keeps moving (a wedged shard must get the service restarted, RFC-free common
/// sense: the watchdog is a liveness proof of the shards, not of this thread).
fn supervise(
    stop: &AtomicBool,
    heartbeats: &[Arc<AtomicU64>],
    notifier: Option<&sd_notify::Notifier>,
    watchdog: Option<Duration>,
    (hangup, on_hangup): (&AtomicBool, &dyn Fn()),
) {
    let mut last: Vec<u64> = heartbeats
        .iter()
        .map(|h| h.load(Ordering::Relaxed))
        .collect();
    let mut next_ping = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(SUPERVISOR_TICK);
        if hangup.swap(false, Ordering::SeqCst) {
            on_hangup();
        }
        let (Some(n), Some(every)) = (notifier, watchdog) else {
            continue;
        };
        if Instant::now() < next_ping {
            continue;
        }
        let now: Vec<u64> = heartbeats
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .collect();
        let stalled: Vec<usize> = now
            .iter()
            .zip(&last)
            .enumerate()
            .filter(|(_, (a, b))| a == b)
            .map(|(i, _)| i)
            .collect();
        if stalled.is_empty() {
            let _ = n.watchdog();
        } else {
            tracing::warn!(
                ?stalled,
                "shard heartbeat did not advance; withholding watchdog ping"
            );
        }
        last = now;
        next_ping = Instant::now() + every;
    }
}

/// 64 bits from the kernel's random source, for the shards' id generators.
fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into the valid buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == b.len() as isize {
        u64::from_ne_bytes(b)
    } else {
        // No entropy source (very old kernel): fall back to the clock; tags stay unique per
        // shard because the generator is a full-period permutation.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
    }
}
