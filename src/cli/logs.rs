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
