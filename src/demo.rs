//! `scimsync demo`: the whole story with nothing set up.
//!
//! Starts the Graph emulator (serving the bundled sample directory) and the Dropbox
//! emulator on free loopback ports, provisions the directory through the default
//! scripts, lets most members accept their invitations, changes the directory file
//! (rename, unassign, delete, disable, membership move, a new hire) — which the Graph
//! emulator turns into delta changes — runs an incremental cycle from Graph delta
//! queries, then one with no change, and prints what each did.

use crate::config::Settings;
use crate::cycle::{self, CycleReport, Runtime};
use crate::emulator::graph::{Graph, Tenant};
use crate::emulator::{self, dropbox::Team};
use crate::error::{exit, Error};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn io(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::File {
        path: p.to_path_buf(),
        source,
    }
}

fn print_cycle(title: &str, r: &CycleReport, graph_requests: u64) {
    println!(
        "\n== {title}: cycle {} ({}) in {:.2?}",
        r.id, r.kind, r.duration
    );
    for l in r.summary_lines() {
        println!("   {l}");
    }
    let reqs: Vec<String> = r.requests.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let reqs = if reqs.is_empty() {
        "none".to_string()
    } else {
        reqs.join(", ")
    };
    println!("   Dropbox requests: {reqs}; Graph requests: {graph_requests}");
}

fn graph_total(rt: &Runtime) -> u64 {
    rt.source.request_counts().values().sum()
}

/// Changes the sample directory the way a week in a real tenant would.
fn change_directory(doc: &mut Value) -> Vec<String> {
    let mut notes = vec![];
    let users = doc["users"].as_array_mut();
    if let Some(users) = users {
        if let Some(u) = users.get_mut(2) {
            u["surname"] = Value::String("Deyoung-Park".into());
            u["displayName"] = Value::String("Allan Deyoung-Park".into());
            notes.push(format!(
                "renamed {} (surname Deyoung → Deyoung-Park)",
                u["userPrincipalName"]
            ));
        }
        if let Some(u) = users.get_mut(7) {
            u["accountEnabled"] = Value::Bool(false);
            notes.push(format!(
                "disabled {} in the directory",
                u["userPrincipalName"]
            ));
        }
        if let Some(u) = users.get(4) {
            notes.push(format!(
                "deleted {} from the directory",
                u["userPrincipalName"]
            ));
        }
        users.remove(4);
        users.push(serde_json::json!({"id":"00000000-0000-4000-8000-000000000777","userPrincipalName":"new.hire@contoso.com",
            "mail":"new.hire@contoso.com","givenName":"New","surname":"Hire","displayName":"New Hire","accountEnabled":true,
            "department":"Sales"}));
        notes.push("hired new.hire@contoso.com (assigned directly)".into());
    }
    let unassign = doc["users"][12]["id"].as_str().map(str::to_string);
    if let (Some(id), Some(assignments)) = (unassign, doc["assignments"].as_array_mut()) {
        assignments.retain(|a| a["principalId"].as_str() != Some(id.as_str()));
        assignments.push(serde_json::json!({"principalId":"00000000-0000-4000-8000-000000000777","principalType":"User","appRole":"User"}));
        notes.push(format!(
            "unassigned {} from the app",
            doc["users"][12]["userPrincipalName"]
        ));
    }
    // Move an Engineering member to Sales.
    let mover = doc["groups"][1]["members"][0].as_str().map(str::to_string);
    if let (Some(m), Some(groups)) = (mover, doc["groups"].as_array_mut()) {
        if let Some(eng) = groups.get_mut(1).and_then(|g| g["members"].as_array_mut()) {
            eng.retain(|x| x.as_str() != Some(m.as_str()));
        }
        if let Some(sales) = groups.get_mut(0).and_then(|g| g["members"].as_array_mut()) {
            sales.push(Value::String(m.clone()));
        }
        notes.push(format!("moved member {m} from Engineering to Sales"));
    }
    notes
}

const DEMO_APP_KEY: &str = "scimsync-demo-app";

/// `scimsync authorize`, with the emulator approving as a team admin would.
fn authorize(settings: &Settings) -> Result<(), Error> {
    let flow = crate::authorize::Flow::begin(settings, false)?;
    println!("\n== authorize: scimsync asks Dropbox for offline access (OAuth 2, PKCE S256)");
    println!("   {}", flow.url.split('&').next().unwrap_or(&flow.url));
    let page_error =
        |e: ureq::Error| Error::answer("the Dropbox emulator", format!("its authorize page: {e}"));
    let page = crate::http::agent(std::time::Duration::from_secs(10))
        .get(&flow.url)
        .call()
        .map_err(page_error)?
        .body_mut()
        .read_to_string()
        .map_err(page_error)?;
    let code = page.rsplit(": ").next().unwrap_or("").trim().to_string();
    let path = flow.complete(settings, &code)?;
    println!(
        "   the emulator approves as a team admin would; refresh token written to {} (0600, never printed)",
        path.display()
    );
    Ok(())
}

/// Runs the demo in a temporary folder.
pub fn run() -> Result<i32, Error> {
    let demo = Demo::start()?;
    println!("scimsync demo");
    println!(
        "  Graph emulator (Entra ID) at {}/v1.0, serving the bundled sample directory",
        demo.graph.base()
    );
    println!(
        "  Dropbox emulator (SCIM 2.0) at {}/scim/v2",
        demo.dropbox.base()
    );
    println!("  working folder {}", demo.dir.display());

    authorize(&demo.settings)?;
    let mut rt = Runtime::open(demo.settings.clone(), std::time::Duration::ZERO)?;
    let first = cycle::sync(&mut rt, false)?;
    let mut graph_seen = graph_total(&rt);
    print_cycle("initial cycle", &first, graph_seen);

    accept_invitations(&demo.team);
    change_directory_file(&demo.dir.join("directory.json"))?;
    // The access token has expired meanwhile: the cycle's first request renews it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = cycle::sync(&mut rt, false)?;
    print_cycle(
        "incremental cycle (Graph delta)",
        &second,
        graph_total(&rt) - graph_seen,
    );
    graph_seen = graph_total(&rt);
    print_log(&rt, second.id)?;

    let third = cycle::sync(&mut rt, false)?;
    print_cycle(
        "incremental cycle with no change",
        &third,
        graph_total(&rt) - graph_seen,
    );
    print_team(&demo, &rt);
    drop(rt);
    demo.dropbox.stop();
    demo.graph.stop();
    let code = [first.exit_code(), second.exit_code(), third.exit_code()]
        .into_iter()
        .max()
        .unwrap_or(exit::OK);
    Ok(code)
}

/// The demo's world: a working folder with the default scripts and the sample
/// directory, the two emulators on loopback, and a config pointing at them.
struct Demo {
    dir: std::path::PathBuf,
    dropbox: emulator::Running,
    team: Arc<Mutex<Team>>,
    graph: emulator::Running,
    settings: Settings,
}

impl Demo {
    fn start() -> Result<Demo, Error> {
        let token = crate::ids::random_hex(32);
        let dir = std::env::temp_dir().join(format!("scimsync-demo-{}", crate::ids::random_hex(8)));
        crate::private::create_dir(&dir.join("scripts")).map_err(io(&dir))?;
        let write = |name: &str, text: &str| -> Result<(), Error> {
            let p = dir.join(name);
            crate::private::write(&p, text.as_bytes()).map_err(io(&p))
        };
        write("scripts/mapping.rhai", crate::script::defaults::MAPPING)?;
        write("scripts/scoping.rhai", crate::script::defaults::SCOPING)?;
        write("directory.json", crate::source::directory::SAMPLE)?;

        // Dropbox issues short-lived access tokens; the demo's live one second, so a
        // refresh shows between the cycles.
        let mut team = Team::new(&token);
        team.oauth = crate::emulator::dropbox::oauth::OAuthServer::new(
            DEMO_APP_KEY,
            None,
            std::time::Duration::from_secs(1),
        );
        let (dropbox, team) = emulator::serve("127.0.0.1:0", team, 16).map_err(Error::Emulator)?;
        let tenant = Tenant {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "scimsync-demo".into(),
            client_secret: crate::ids::random_hex(32),
            app: "11111111-2222-3333-4444-555555555555".into(),
            token_lifetime: 3599,
            certificate: None,
            federated_token: None,
        };
        let directory =
            Graph::new(dir.join("directory.json"), tenant.clone()).map_err(Error::Emulator)?;
        let (graph, graph_shared) =
            emulator::serve("127.0.0.1:0", directory, 2).map_err(Error::Emulator)?;
        if let Ok(mut g) = graph_shared.lock() {
            g.set_base(&graph.base());
        }
        let config = format!(
            "state = \"scimsync.db\"\nscripts = \"scripts\"\n[source]\ntype = \"graph\"\ntenant = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"env:SCIMSYNC_DEMO_SECRET\"\napp = \"{}\"\nscope = \"assigned\"\ngraph_url = \"{g}\"\nlogin_url = \"{g}\"\n[target]\ntype = \"dropbox\"\nurl = \"{d}/scim/v2\"\napp_key = \"{DEMO_APP_KEY}\"\nrefresh_token = \"file:secrets/dropbox-refresh-token\"\ntoken_url = \"{d}/oauth2/token\"\nauthorize_url = \"{d}/oauth2/authorize\"\n",
            tenant.tenant,
            tenant.client_id,
            tenant.app,
            g = graph.base(),
            d = dropbox.base(),
        );
        write("scimsync.toml", &config)?;
        std::env::set_var("SCIMSYNC_DEMO_SECRET", &tenant.client_secret);
        let settings = Settings::load(&dir.join("scimsync.toml"))?;
        Ok(Demo {
            dir,
            dropbox,
            team,
            graph,
            settings,
        })
    }
}

fn lock(team: &Mutex<Team>) -> std::sync::MutexGuard<'_, Team> {
    match team.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Most invitees accept; a few are still invited when the directory changes.
fn accept_invitations(team: &Mutex<Team>) {
    let mut t = lock(team);
    let members: Vec<String> = t.member_names();
    let (pending, accepting): (Vec<&String>, Vec<&String>) = members
        .iter()
        .partition(|n| n.starts_with("christie") || n.starts_with("debra"));
    for name in &accepting {
        t.accept(name);
    }
    let pending: Vec<&str> = pending.iter().map(|s| s.as_str()).collect();
    println!(
        "\n== {} members accept their Dropbox invitations; still invited: {}",
        accepting.len(),
        pending.join(", ")
    );
    println!("   (Dropbox cannot suspend an invited member: disabling one deletes it)");
}

/// Changes the directory file as an admin would in Entra, and says what changed.
fn change_directory_file(path: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut doc: Value = serde_json::from_str(&text)?;
    let notes = change_directory(&mut doc);
    let text = serde_json::to_string_pretty(&doc)?;
    crate::private::write(path, text.as_bytes()).map_err(io(path))?;
    println!("\n== the directory changes:");
    for n in notes {
        println!("   {n}");
    }
    Ok(())
}

/// A cycle's provisioning log, as the demo shows it.
fn print_log(rt: &Runtime, cycle: i64) -> Result<(), Error> {
    let entries = rt.state.logs(&crate::state::LogQuery {
        cycle: Some(cycle),
        ..Default::default()
    })?;
    for e in entries {
        println!("   - {} {} {}: {}", e.action, e.kind, e.display, e.reason);
        for m in e.modified.iter().filter(|m| m.name != "members") {
            println!("       {}: {} → {}", m.name, m.old, m.new);
        }
    }
    Ok(())
}

/// The team as the emulator holds it at the end, and where to look next.
fn print_team(demo: &Demo, rt: &Runtime) {
    let (invited, active, suspended, groups) = lock(&demo.team).census();
    println!("\n== the Dropbox team now: {active} active, {invited} invited, {suspended} suspended member(s); {groups} group(s)");
    println!(
        "   access tokens obtained with the refresh token: {} (each lives 1 s here, about 4 h at Dropbox)",
        rt.target.token_refreshes()
    );
    println!(
        "   provisioning log: scimsync -c {} logs",
        demo.dir.join("scimsync.toml").display()
    );
}
