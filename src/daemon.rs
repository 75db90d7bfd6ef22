//! `scimsync run`: the long-running service.
//!
//! A cycle every `interval`; the scripts folder is watched (the folder, not the
//! files: editors replace files on save) and changes are debounced, recompiled and
//! smoke-tested before they replace the running scripts — a broken edit is logged with
//! file and line and the previous version keeps working. A successful reload runs the
//! next cycle at once (a changed script means a full re-evaluation). The folders of
//! the `file:` secrets are watched too: a rotated token, client secret, certificate or
//! refresh token (`scimsync authorize` beside the daemon) is read again and ends a
//! quarantine's back-off with a cycle at once. SIGHUP forces both reloads;
//! SIGTERM/SIGINT let the object in flight finish, record the state and exit 0.

use crate::config::Settings;
use crate::cycle::{self, Runtime};
use crate::error::{exit, Error};
use crate::script::Scripts;
use crate::state::Fact;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Quiet time after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
const TICK: Duration = Duration::from_millis(100);
/// How long a daemon's cycle waits for a command beside it to let go of the state
/// (a `sync` of a large directory can take minutes); a stop ends the wait.
const CYCLE_WAIT: Duration = Duration::from_secs(24 * 3600);

/// What changed on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    Scripts,
    Secrets,
}

/// Why the daemon woke up between cycles.
enum Wake {
    Interval,
    Reloaded,
    Stop,
}

pub fn run(settings: Settings) -> Result<i32, Error> {
    let (stop, hup) = signals()?;
    let scripts_dir = settings.scripts_dir.clone();
    // Dropped at the end of `run`: the folders are watched while it loops.
    let (_watcher, rx) = watch(&settings)?;
    let interval = settings.interval;
    // One daemon per state for its whole life; the cycle lock only while a cycle
    // runs, so `provision`, `sync`, `restart` and `allow-deletes` work beside it.
    let _daemon = crate::state::StateLock::acquire_daemon(&settings.state_path)?;
    let mut rt = Runtime::open_for_daemon(settings)?;
    rt.stop = Some(Arc::clone(&stop));
    let counters = crate::monitoring::Shared::default();
    if let Some(addr) = crate::monitoring::serve(&rt.settings, Arc::clone(&counters))? {
        log::info!("serving /healthz and /metrics on http://{addr}");
    }
    crate::monitoring::sd_notify("READY=1");
    log::info!(
        "scimsync run: a cycle every {:?}; watching {} for script changes",
        interval,
        scripts_dir.display()
    );
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let outcome = if rt.settings.sync.enabled {
            let outcome = locked_cycle(&mut rt);
            count(&rt, &counters, outcome.as_ref().ok());
            Some(outcome)
        } else {
            log::info!("provisioning is off ([sync] enabled = false): no cycle");
            None
        };
        match outcome {
            None => {}
            Some(Ok(r)) => log::info!(
                "cycle {} ({}) done in {:.2?}: {}",
                r.id,
                r.kind,
                r.duration,
                if r.summary_lines().is_empty() {
                    "nothing to do".to_string()
                } else {
                    r.summary_lines().join("; ")
                }
            ),
            Some(Err(e)) => log::error!("cycle failed: {e}"),
        }
        let delay = cycle::next_delay(&rt.state, interval).unwrap_or(interval);
        if delay > interval {
            log::warn!("in quarantine: next cycle in {delay:?}");
        }
        let next_at = crate::clock::now() + delay.as_secs() as i64;
        if let Err(e) = rt
            .state
            .set_meta(Fact::NextCycleAt, Some(&next_at.to_string()))
        {
            log::warn!("cannot record the next cycle time: {e}");
        }
        match wait(&mut rt, delay, &stop, &hup, &rx) {
            Wake::Stop => break,
            Wake::Interval | Wake::Reloaded => continue,
        }
    }
    crate::monitoring::sd_notify("STOPPING=1");
    let _ = rt.state.set_meta(Fact::NextCycleAt, None);
    log::info!("scimsync run: stopped; state recorded");
    Ok(exit::OK)
}

/// A cycle under the cycle lock, waiting for whatever runs beside the daemon (a
/// `sync`, a `provision`) to finish first; the lock is let go of afterwards.
fn locked_cycle(rt: &mut Runtime) -> Result<cycle::CycleReport, Error> {
    rt.lock(CYCLE_WAIT)?;
    let outcome = cycle::sync(rt, false);
    rt.unlock();
    outcome
}

/// The metrics' counters after a cycle: its kind and status as recorded, its
/// actions, and the target client's cumulative request and token counts.
fn count(rt: &Runtime, counters: &crate::monitoring::Shared, report: Option<&cycle::CycleReport>) {
    let Ok(mut c) = counters.lock() else {
        return;
    };
    if let Some(last) = rt.state.cycles(1).ok().and_then(|cs| cs.into_iter().next()) {
        *c.cycles
            .entry((last.kind.to_string(), last.status.to_string()))
            .or_insert(0) += 1;
    }
    if let Some(r) = report {
        for ((action, status), n) in &r.outcome.counts {
            *c.actions
                .entry((action.as_str().to_string(), status.as_str().to_string()))
                .or_insert(0) += *n as u64;
        }
        c.last_duration = Some(r.duration.as_secs_f64());
    }
    c.requests = rt.target.answer_counts();
    c.token_refreshes = rt.target.token_refreshes();
}

/// SIGTERM and SIGINT stop the daemon between batches; SIGHUP reloads.
fn signals() -> Result<(Arc<AtomicBool>, Arc<AtomicBool>), Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|source| Error::System {
            what: "signal handler",
            source,
        })?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup)).map_err(
        |source| Error::System {
            what: "signal handler",
            source,
        },
    )?;
    Ok((stop, hup))
}

/// Watches the scripts folder and the folders of secret files; changes arrive on
/// the receiver.
fn watch(
    settings: &Settings,
) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<Changed>), Error> {
    let (tx, rx) = mpsc::channel::<Changed>();
    let scripts_dir = settings.scripts_dir.clone();
    let secrets = settings.secret_files();
    let names: Vec<std::ffi::OsString> = secrets
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
        .collect();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        let rhai = ev
            .paths
            .iter()
            .any(|p| p.extension().map(|x| x == "rhai").unwrap_or(false));
        if rhai {
            let _ = tx.send(Changed::Scripts);
        }
        // Secret files are matched by name in their watched folders (an editor or
        // `authorize` replaces the file: a new inode, so the folder is watched).
        if ev
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|x| x == n)))
        {
            let _ = tx.send(Changed::Secrets);
        }
    })
    .map_err(|source| Error::Watch {
        path: scripts_dir.clone(),
        source,
    })?;
    use notify::Watcher;
    watcher
        .watch(&scripts_dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| Error::Watch {
            path: scripts_dir.clone(),
            source,
        })?;
    let mut folders: Vec<std::path::PathBuf> = secrets
        .iter()
        .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
        .collect();
    folders.sort();
    folders.dedup();
    for dir in folders {
        // A folder that does not exist yet (authorize makes it) is not watched;
        // SIGHUP still reloads.
        if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            log::warn!(
                "cannot watch {} for secret changes ({e}); SIGHUP reloads them",
                dir.display()
            );
        }
    }
    Ok((watcher, rx))
}

fn wait(
    rt: &mut Runtime,
    interval: Duration,
    stop: &AtomicBool,
    hup: &AtomicBool,
    rx: &mpsc::Receiver<Changed>,
) -> Wake {
    let deadline = Instant::now() + interval;
    let mut scripts: Option<Instant> = None;
    let mut secrets: Option<Instant> = None;
    let watchdog = crate::monitoring::watchdog_every();
    let mut petted = Instant::now();
    crate::monitoring::sd_notify("WATCHDOG=1");
    loop {
        if watchdog.is_some_and(|every| petted.elapsed() >= every) {
            crate::monitoring::sd_notify("WATCHDOG=1");
            petted = Instant::now();
        }
        if stop.load(Ordering::Relaxed) {
            return Wake::Stop;
        }
        if hup.swap(false, Ordering::Relaxed) {
            log::info!("SIGHUP: reloading secrets and scripts");
            rt.reload_credentials();
            reload(rt);
            return Wake::Reloaded;
        }
        while let Ok(c) = rx.try_recv() {
            match c {
                Changed::Scripts => scripts = Some(Instant::now()),
                Changed::Secrets => secrets = Some(Instant::now()),
            }
        }
        if secrets.is_some_and(|t| t.elapsed() >= DEBOUNCE) {
            // A new secret may be the fix a quarantine waits for: try it now.
            log::info!("a secret file changed: credentials read again; a cycle starts now");
            rt.reload_credentials();
            return Wake::Reloaded;
        }
        if let Some(t) = scripts {
            if t.elapsed() >= DEBOUNCE {
                scripts = None;
                if reload(rt) {
                    return Wake::Reloaded;
                }
            }
        }
        if Instant::now() >= deadline {
            return Wake::Interval;
        }
        std::thread::sleep(TICK);
    }
}

/// Recompiles and smoke-tests the scripts; swaps them in only if both succeed.
pub fn reload(rt: &mut Runtime) -> bool {
    let new = match Scripts::load(&rt.settings.scripts_dir) {
        Ok(s) => s,
        Err(e) => {
            log::error!("scripts not reloaded, the running version stays: {e}");
            cycle::notify_reload_failed(rt, &e.to_string());
            return false;
        }
    };
    if new.hash() == rt.scripts.hash() {
        return false;
    }
    if let Err(f) = smoke(&new, rt.sample_user.as_ref(), rt.sample_group.as_ref()) {
        log::error!("scripts not reloaded, the running version stays: smoke test failed: {f}");
        cycle::notify_reload_failed(rt, &format!("smoke test failed: {f}"));
        return false;
    }
    rt.scripts = new;
    log::info!("scripts reloaded; the next cycle re-evaluates every object");
    true
}

/// Calls every script function once on a real record (or a minimal one).
fn smoke(
    s: &Scripts,
    user: Option<&Map<String, Value>>,
    group: Option<&Map<String, Value>>,
) -> Result<(), crate::script::ScriptFailure> {
    let fallback_user: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "id": "00000000-0000-0000-0000-000000000000", "userPrincipalName": "smoke.test@example.com",
        "mail": "smoke.test@example.com", "givenName": "Smoke", "surname": "Test", "accountEnabled": true,
        "appRoles": ["User"]}))
    .unwrap_or_default();
    let fallback_group: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "id": "00000000-0000-0000-0000-000000000001", "displayName": "Smoke test", "appRoles": ["User"]}))
    .unwrap_or_default();
    let u = user.unwrap_or(&fallback_user);
    let g = group.unwrap_or(&fallback_group);
    s.user_in_scope(u)?;
    s.map_user(u)?;
    s.group_in_scope(g)?;
    s.map_group(g)?;
    Ok(())
}
