//! Commands that look after the job rather than run it: `snapshot` (a copy of the
//! team), `restart` (Entra's "restart provisioning"), `allow-deletes`.

use super::*;

pub(super) fn snapshot(settings: &Settings, out: &Path) -> Result<i32, Error> {
    let taken = crate::snapshot::take(settings)?;
    crate::snapshot::write(&taken, out)?;
    println!(
        "wrote {}: {} users, {} groups{}",
        out.display(),
        taken.users.len(),
        taken.groups.len(),
        taken
            .legacy
            .as_ref()
            .map(|l| format!(", {} Business API members", l.members.len()))
            .unwrap_or_default()
    );
    Ok(exit::OK)
}

pub(super) fn restart(
    settings: &Settings,
    scope: RestartScope,
    wait: std::time::Duration,
) -> Result<i32, Error> {
    let _lock = cycle::lock_state(&settings.state_path, wait)?;
    let mut state = State::open(&settings.state_path)?;
    let s = match scope {
        RestartScope::Watermark => Restart::Watermark,
        RestartScope::Escrows => Restart::Escrows,
        RestartScope::Quarantine => Restart::Quarantine,
        RestartScope::Migration => Restart::Migration,
        RestartScope::Full => Restart::Full,
    };
    state.restart(s)?;
    println!(
        "restarted ({}); the next cycle is {}",
        s.as_str(),
        cycle::next_kind(&state, false)?
    );
    Ok(exit::OK)
}

pub(super) fn allow_deletes(settings: &Settings, wait: std::time::Duration) -> Result<i32, Error> {
    let _lock = cycle::lock_state(&settings.state_path, wait)?;
    let state = State::open(&settings.state_path)?;
    match state.meta(Fact::Held)? {
        Some(n) => {
            state.set_meta(Fact::AllowDeletesOnce, Some("1"))?;
            println!("{n} held destructive action(s) will run in the next cycle (once)");
        }
        None => println!("nothing is held"),
    }
    Ok(exit::OK)
}
