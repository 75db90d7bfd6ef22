//! `scimsync check`: config, scripts over every record, and Entra's target probe.

use super::*;

pub(super) fn check(settings: &Settings) -> Result<i32, Error> {
    println!("config {}: ok", settings.config_path.display());
    let scripts = Scripts::load(&settings.scripts_dir)?;
    println!("scripts {}: compiled", settings.scripts_dir.display());
    let mut source = crate::source::open(&settings.source)?;
    source.check()?;
    let snapshot = source.read(&crate::source::ReadRequest::full())?;
    println!(
        "source {}: {} users, {} groups",
        source.describe(),
        snapshot.users.len(),
        snapshot.groups.len()
    );
    let mut problems = 0;
    for e in &snapshot.errors {
        problems += 1;
        println!(
            "  invalid {} {}: {}",
            e.record.as_str(),
            e.object,
            e.message
        );
    }
    for e in crate::evaluate::evaluate(&snapshot, &scripts, None) {
        if let crate::evaluate::Decision::Failed(f) = &e.decision {
            problems += 1;
            println!(
                "  script error on {} {} ({}): {f}",
                e.kind.as_str(),
                e.display,
                e.source_id
            );
        }
    }
    let mut target = crate::targets::open(&settings.target)?;
    match target.test_connection() {
        Ok(()) => println!(
            "target {} at {}: connection ok",
            settings.target.kind.name(),
            settings.target.url
        ),
        Err(e) => {
            println!(
                "target {} at {}: {}",
                settings.target.kind.name(),
                settings.target.url,
                e.message
            );
            return Ok(if e.is_auth() {
                exit::USAGE
            } else {
                exit::RUNTIME
            });
        }
    }
    problems += check_deprovision(settings);
    if problems > 0 {
        println!("{problems} problem(s) found");
        return Ok(exit::USAGE);
    }
    Ok(exit::OK)
}

/// `[deprovision]` against the team: what a removal will do, and for a transfer,
/// that `transfer_to` is on the team and an admin (the Business API refuses
/// otherwise, and a refused removal is a leaver kept past their time).
fn check_deprovision(settings: &Settings) -> usize {
    let d = &settings.target.deprovision;
    let after = match d.remove_after {
        Some(a) => format!(
            "suspended, removed after {}",
            crate::clock::human_duration(a.as_secs())
        ),
        None => "removed at once (remove_after = \"0s\")".to_string(),
    };
    if settings.target.kind != crate::config::TargetKind::DropboxLegacy {
        println!(
            "deprovision: a leaver is {after} (DELETE; the app decides what becomes of files)"
        );
        return 0;
    }
    println!("deprovision: a leaver is {after}: {}", d.consequence());
    if d.files != crate::config::LeaverFiles::Transfer {
        return 0;
    }
    match crate::targets::legacy::LegacyTarget::new(&settings.target).transfer_member() {
        Ok(_) => {
            println!("deprovision: transfer_to is a team admin: ok");
            0
        }
        Err(e) => {
            println!("deprovision: {}", e.message);
            1
        }
    }
}
