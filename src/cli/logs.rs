//! `scimsync logs` and `scimsync report`: the provisioning log as text, JSON or CSV,
//! and the cycle history as an HTML page.

use super::*;

pub(super) fn logs(
    settings: &Settings,
    mut query: LogQuery,
    since: Option<&str>,
    (json, csv): (bool, bool),
) -> Result<i32, Error> {
    let state = State::open_read_only(&settings.state_path)?;
    if let Some(s) = since {
        let back = crate::config::parse_duration(s)
            .map_err(|m| InputError::Usage(format!("--since: {m}")))?;
        query.since = Some(crate::clock::now() - back.as_secs() as i64);
    }
    print_logs(&state.logs(&query)?, json, csv);
    Ok(exit::OK)
}

pub(super) fn report(settings: &Settings, html: &Path, cycles: usize) -> Result<i32, Error> {
    let state = State::open_read_only(&settings.state_path)?;
    let page = crate::report::html(&state, settings, cycles)?;
    crate::private::write(html, page.as_bytes()).map_err(Error::file(html))?;
    println!("wrote {}", html.display());
    Ok(exit::OK)
}

/// `--status` takes the log's own values (`failed` is accepted for `failure`, the
/// word Entra's portal shows).
impl ValueEnum for LogStatus {
    fn value_variants<'a>() -> &'a [Self] {
        LogStatus::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let value = clap::builder::PossibleValue::new(self.as_str());
        Some(match self {
            LogStatus::Failure => value.alias("failed"),
            LogStatus::Skipped => value.alias("skip"),
            _ => value,
        })
    }
}

/// `--action` takes the log's own values, listed by `--help`.
impl ValueEnum for LogAction {
    fn value_variants<'a>() -> &'a [Self] {
        LogAction::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}
