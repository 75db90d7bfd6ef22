//! Printing shared by the commands: values as plans and logs show them (already
//! masked where a script used `redact`), the provisioning log as text, JSON or CSV,
//! durations.

pub(super) fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

pub(super) fn print_logs(entries: &[crate::state::LogEntry], json: bool, csv: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(entries).unwrap_or_default()
        );
        return;
    }
    if csv {
        println!(
            "id,cycle,time,kind,source_id,target_id,display,action,status,reason,modified,error"
        );
        for e in entries {
            let modified: Vec<String> = e
                .modified
                .iter()
                .map(|m| format!("{}: {} -> {}", m.name, show(&m.old), show(&m.new)))
                .collect();
            let row = [
                e.id.to_string(),
                e.cycle.to_string(),
                crate::clock::rfc3339(e.at),
                e.kind.clone(),
                e.source_id.clone(),
                e.target_id.clone().unwrap_or_default(),
                e.display.clone(),
                e.action.to_string(),
                e.status.to_string(),
                e.reason.clone(),
                modified.join("; "),
                e.error.clone().unwrap_or_default(),
            ];
            let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
            println!("{}", cells.join(","));
        }
        return;
    }
    for e in entries {
        println!(
            "{}  cycle {:<4} {:<15} {:<8} {:<5} {}  {}",
            crate::clock::rfc3339(e.at),
            e.cycle,
            e.action,
            e.status,
            e.kind,
            e.display,
            e.reason
        );
        for m in &e.modified {
            println!("      {}: {} → {}", m.name, show(&m.old), show(&m.new));
        }
        if let Some(err) = &e.error {
            println!("      error: {err}");
        }
    }
}

pub(super) fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub(super) fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{:?}", d)
    }
}
