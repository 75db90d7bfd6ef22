//! Fuzzing (proptest) of what a hostile or broken server can send and of the filter
//! builder. The corpus in `tests/corpus/` (SCIM and Graph bodies, filters) runs
//! first as it is, then as the seed of random mutations; proptest keeps any failing
//! case in `proptest-regressions/`.

use proptest::prelude::*;
use scimsync::config::{Actions, GraphCredential, Scope, Secret, TargetKind, TargetSettings};
use scimsync::http::credential::{Credential, SecretRef};
use scimsync::http::RetryPolicy;
use scimsync::model::ObjectKind;
use scimsync::scim::filter;
use scimsync::source::{ReadRequest, Source};
use scimsync::targets::{scim::ScimTarget, Change, Target};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server that answers every request with the status and body in its slot (the
/// OAuth token endpoint always gets a valid token).
struct Hostile {
    base: String,
    slot: Arc<Mutex<(u16, Vec<u8>)>>,
}

impl Hostile {
    fn start() -> Hostile {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let slot = Arc::new(Mutex::new((200u16, b"{}".to_vec())));
        let shared = Arc::clone(&slot);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut out = conn;
                    let (mut line, mut length) = (String::new(), 0usize);
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let oauth = line.contains("/oauth2/");
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let (status, answer) = if oauth {
                        (
                            200,
                            br#"{"access_token":"t","expires_in":3599,"token_type":"Bearer"}"#
                                .to_vec(),
                        )
                    } else {
                        shared.lock().unwrap().clone()
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        answer.len()
                    );
                    let _ = out.write_all(head.as_bytes());
                    let _ = out.write_all(&answer);
                });
            }
        });
        Hostile { base, slot }
    }

    fn answer(&self, status: u16, body: &[u8]) {
        let body = String::from_utf8_lossy(body).replace("GRAPH", &self.base);
        *self.slot.lock().unwrap() = (status, body.into_bytes());
    }
}

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(path)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn scim_target(base: &str) -> ScimTarget {
    let mut t = ScimTarget::new(&TargetSettings {
        kind: TargetKind::Scim,
        url: format!("{base}/scim/v2"),
        credential: Credential::Token(SecretRef::Literal(Secret::new("fuzz-token"))),
        timeout: Duration::from_secs(5),
        actions: Actions {
            create: true,
            update: true,
            delete: true,
        },
        profile: None,
        max_in_flight: 2,
        deprovision: Default::default(),
    })
    .unwrap();
    t.set_retry_policy(fast());
    t
}

/// Every call a cycle makes, on whatever the server answers: an answer or a typed
/// error, never a panic or a hang.
fn exercise_scim(t: &mut ScimTarget) {
    let _ = t.test_connection();
    let _ = t.find(ObjectKind::User, "userName", "a@contoso.com");
    let _ = t.get(ObjectKind::Group, "g:1");
    let _ = t.list(ObjectKind::User);
    let _ = t.list(ObjectKind::Group);
    let attrs = [("userName".to_string(), json!("a@contoso.com"))]
        .into_iter()
        .collect();
    let _ = t.create(ObjectKind::User, &attrs);
    let _ = t.create_batch(ObjectKind::User, &[&attrs, &attrs]);
    let change = Change {
        path: "name.familyName".into(),
        old: None,
        new: Some(json!("B")),
    };
    let _ = t.modify(ObjectKind::User, "dbmid:1", &[change]);
    let _ = t.add_members("g:1", &["dbmid:1".to_string()]);
    let _ = t.remove_members("g:1", &["dbmid:1".to_string()]);
    let _ = t.delete(ObjectKind::User, "dbmid:1");
    let _ = t.invited(&["dbmid:1".to_string()]);
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        retries: 1,
        backoff: Duration::from_millis(1),
        max_wait: Duration::from_millis(5),
    }
}

fn graph_source(base: &str) -> scimsync::source::graph::GraphSource {
    let mut g = scimsync::source::graph::GraphSource::new(
        "contoso.onmicrosoft.com",
        "client",
        GraphCredential::Secret(SecretRef::Literal(Secret::new("fuzz-secret"))),
        "11111111-2222-3333-4444-555555555555",
        Scope::Assigned,
        base,
        base,
        false,
        &[],
        Duration::from_secs(5),
    );
    g.set_retry_policy(fast());
    g
}

fn exercise_graph(base: &str) -> String {
    let mut g = graph_source(base);
    let r = g.read(&ReadRequest {
        watermark: None,
        need_all: true,
        need_records: true,
        cache: &|| Ok(None),
        keep: None,
        users: None,
        cache_out: None,
    });
    match r {
        Ok(s) => format!("ok {} users", s.users.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_corpus_gets_answers_or_clear_errors() {
    let server = Hostile::start();
    let mut t = scim_target(&server.base);
    for body in corpus("scim") {
        for status in [200, 201, 400, 404, 409, 500] {
            server.answer(status, &body);
            exercise_scim(&mut t);
        }
    }
    let mut seen = vec![];
    for body in corpus("graph") {
        server.answer(200, &body);
        seen.push(exercise_graph(&server.base));
    }
    assert!(seen.iter().any(|m| m.contains("loops back")), "{seen:?}");
    assert!(seen.iter().any(|m| m.contains("off its host")), "{seen:?}");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/filters.txt"
    ))
    .unwrap();
    for f in text.lines() {
        let _ = filter::parse(f);
    }
}

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("dbmid:1")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("id".to_string()),
                        Just("Resources".to_string()),
                        Just("totalResults".to_string()),
                        Just("value".to_string()),
                        Just("members".to_string()),
                        Just("userName".to_string()),
                        Just("@odata.nextLink".to_string()),
                        Just("@odata.deltaLink".to_string()),
                        "[a-zA-Z@.]{1,10}",
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Bodies: corpus entries cut short, arbitrary JSON, arbitrary bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let mut seeds = corpus("scim");
    seeds.extend(corpus("graph"));
    prop_oneof![
        (prop::sample::select(seeds), any::<prop::sample::Index>())
            .prop_map(|(b, i)| b[..i.index(b.len() + 1)].to_vec()),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_scim_and_graph_answers_never_panic_or_hang(status in prop::sample::select(vec![200u16, 201, 204, 400, 404, 409, 429, 500]), b in body()) {
        let server = Hostile::start();
        server.answer(status, &b);
        let mut t = scim_target(&server.base);
        exercise_scim(&mut t);
        let _ = exercise_graph(&server.base);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever a value holds, the filter built for it matches exactly that value:
    /// quotes, backslashes and keywords stay inside the string.
    #[test]
    fn a_built_filter_is_one_comparison_with_the_exact_value(v in any::<String>(), path in prop::sample::select(vec!["userName", "externalId", "displayName"])) {
        let f = filter::eq(path, &v);
        prop_assert_eq!(
            filter::parse(&f),
            Ok(filter::Filter::Compare(path.to_string(), filter::Op::Eq, Value::String(v)))
        );
    }

    #[test]
    fn any_filter_text_parses_or_fails_without_panicking(s in ".{0,60}") {
        let _ = filter::parse(&s);
    }
}
