//! `scimsync sync`: one cycle now, or exactly a reviewed plan.

use super::*;

pub(super) fn sync(
    settings: Settings,
    full: bool,
    force_legacy: bool,
    plan: Option<&Path>,
    wait: std::time::Duration,
) -> Result<i32, Error> {
    let reviewed = match plan {
        Some(p) => Some(crate::review::SavedPlan::read(p)?),
        None => None,
    };
    if !settings.sync.enabled {
        println!(
            "provisioning is off ([sync] enabled = false in {}); nothing done",
            settings.config_path.display()
        );
        return Ok(exit::OK);
    }
    let mut rt = Runtime::open(settings, wait)?;
    rt.force_legacy = force_legacy;
    let full = reviewed.as_ref().map(|r| r.full).unwrap_or(full);
    let report = cycle::sync_reviewed(&mut rt, full, reviewed.as_ref())?;
    println!(
        "cycle {} ({}) in {:.2?}",
        report.id, report.kind, report.duration
    );
    for l in report.summary_lines() {
        println!("  {l}");
    }
    if let Some(e) = &report.outcome.first_error {
        println!("  first error: {e}");
    }
    if !report.requests.is_empty() {
        let r: Vec<String> = report
            .requests
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("  target requests: {}", r.join(", "));
    }
    Ok(report.exit_code())
}
