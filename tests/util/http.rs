//! The tests' own HTTP calls (ureq, status codes as data): to the emulators'
//! admin routes, to third-party servers, and hand-made changes in a team.

use serde_json::Value;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// One request: the status and the body, or why no answer came.
pub fn try_call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        request = request.header("Authorization", format!("Bearer {t}"));
    }
    let sent = match body {
        Some(b) => agent().run(
            request
                .header("Content-Type", "application/json")
                .body(b.to_string())
                .map_err(|e| e.to_string())?,
        ),
        None => agent().run(request.body(()).map_err(|e| e.to_string())?),
    };
    let mut resp = sent.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| format!("{method} {url}: {e}"))?;
    Ok((status, text))
}

/// `try_call`, panicking when no answer came.
#[track_caller]
pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, String) {
    try_call(method, url, token, body).unwrap()
}

/// `call` with the body as JSON (`null` when it is not).
#[track_caller]
pub fn call_json(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let (status, text) = call(method, url, token, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A form POST (OAuth's token endpoint).
#[track_caller]
pub fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let mut resp = agent().post(url).send_form(form.iter().copied()).unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}
