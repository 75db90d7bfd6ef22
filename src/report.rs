//! `scimsync report --html FILE`: one self-contained page (no network) with the cycle
//! history as charts — duration, actions by kind, failures — and the current
//! quarantine, held deletions and escrows: what an admin would rather look at than
//! read. The data is embedded as JSON; a small inline script draws the SVG charts.

use crate::config::Settings;
use crate::error::Error;
use crate::state::Fact;
use crate::state::{CycleStatus, LogQuery, LogStatus, State};
use serde_json::{json, Value};

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Builds the page.
pub fn html(state: &State, settings: &Settings, max_cycles: usize) -> Result<String, Error> {
    let mut cycles = state.cycles(max_cycles)?;
    cycles.reverse();
    let data: Vec<Value> = cycles
        .iter()
        .map(|c| {
            let mut by_action = serde_json::Map::new();
            if let Some(a) = c.summary.get("actions").and_then(|a| a.as_object()) {
                for (k, v) in a {
                    if let Some((action, "success")) = k.split_once('/') {
                        let n = by_action.get(action).and_then(|x| x.as_u64()).unwrap_or(0)
                            + v.as_u64().unwrap_or(0);
                        by_action.insert(action.to_string(), json!(n));
                    }
                }
            }
            json!({
                "id": c.id,
                "kind": c.kind,
                "status": c.status,
                "started": crate::clock::rfc3339(c.started_at),
                "duration_ms": c.summary.get("duration_ms").and_then(|d| d.as_f64()).unwrap_or(0.0),
                "failures": c.summary.get("failures").and_then(|d| d.as_u64()).unwrap_or(0),
                "held": c.summary.get("held").and_then(|d| d.as_u64()).unwrap_or(0),
                "actions": by_action,
            })
        })
        .collect();
    let (users, active, groups) = state.link_counts()?;
    let escrows = state.escrows()?;
    let quarantine = crate::cycle::quarantine_state(state)?;
    let held: Vec<Value> = match state.meta(Fact::Held)? {
        Some(_) => {
            let last = cycles
                .iter()
                .rev()
                .find(|c| c.status == CycleStatus::Held)
                .map(|c| c.id);
            state
                .logs(&LogQuery {
                    status: Some(LogStatus::Staged),
                    cycle: last,
                    ..Default::default()
                })?
                .into_iter()
                .map(|e| json!({"action": e.action, "object": e.display, "reason": e.reason}))
                .collect()
        }
        None => vec![],
    };
    // `</` must not appear inside the script element.
    let data_json = Value::Array(data).to_string().replace("</", "<\\/");

    let mut out = String::new();
    out.push_str(&format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>scimsync report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #666; margin-top: .2em; }}
.chart {{ margin: 1.5em 0; }} .chart h2 {{ font-size: 1.05em; margin: 0 0 .4em; }}
svg {{ background: #fafafa; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }} td, th {{ border: 1px solid #ddd; padding: .3em .6em; text-align: left; }}
.q {{ background: #fee; border: 1px solid #c33; padding: .8em; }} .ok {{ color: #282; }}
.legend span {{ display: inline-block; margin-right: 1em; }} .legend i {{ display: inline-block; width: .8em; height: .8em; margin-right: .3em; }}
</style></head><body>
<h1>scimsync</h1>
<p class="sub">{config} — generated {now} — {users} user(s) provisioned ({active} active), {groups} group(s)</p>
"#,
        config = esc(&settings.config_path.display().to_string()),
        now = crate::clock::rfc3339(crate::clock::now()),
    ));
    match &quarantine {
        Some(q) => out.push_str(&format!(
            "<p class=\"q\"><b>Quarantine</b> since {}: {}</p>\n",
            crate::clock::rfc3339(q.since),
            esc(&q.reason)
        )),
        None => out.push_str("<p class=\"ok\">Not in quarantine.</p>\n"),
    }
    out.push_str(
        r#"<div class="chart"><h2>Cycle duration (ms)</h2><svg id="duration" data-chart="duration" width="900" height="180"></svg></div>
<div class="chart"><h2>Actions applied per cycle</h2><div class="legend" id="legend"></div><svg id="actions" data-chart="actions" width="900" height="220"></svg></div>
<div class="chart"><h2>Failures per cycle</h2><svg id="failures" data-chart="failures" width="900" height="140"></svg></div>
"#,
    );
    out.push_str(&format!("<h2>Held deletions ({})</h2>\n", held.len()));
    if held.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        out.push_str("<table><tr><th>action</th><th>object</th><th>reason</th></tr>\n");
        for h in &held {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(h["action"].as_str().unwrap_or("")),
                esc(h["object"].as_str().unwrap_or("")),
                esc(h["reason"].as_str().unwrap_or(""))
            ));
        }
        out.push_str(
            "</table><p>Release them once with <code>scimsync allow-deletes</code>.</p>\n",
        );
    }
    out.push_str(&format!("<h2>Escrowed objects ({})</h2>\n", escrows.len()));
    if escrows.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        out.push_str("<table><tr><th>kind</th><th>object</th><th>attempts</th><th>next retry</th><th>last error</th></tr>\n");
        for e in &escrows {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&e.kind),
                esc(&e.source_id),
                e.attempts,
                crate::clock::rfc3339(e.next_at),
                esc(&e.last_error)
            ));
        }
        out.push_str("</table>\n");
    }
    out.push_str(&pending_removals(state, settings)?);
    out.push_str("<script id=\"data\" type=\"application/json\">");
    out.push_str(&data_json);
    out.push_str("</script>\n<script>\n");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body></html>\n");
    Ok(out)
}

/// Leavers waiting out the grace period, with their removal date.
fn pending_removals(state: &State, settings: &Settings) -> Result<String, Error> {
    let pending = crate::cycle::pending_removals(state, settings)?;
    let mut out = format!("<h2>Pending removals ({})</h2>\n", pending.len());
    if pending.is_empty() {
        out.push_str("<p>None.</p>\n");
        return Ok(out);
    }
    out.push_str("<table><tr><th>user</th><th>why</th><th>suspended since</th><th>removed on, if still gone</th></tr>\n");
    for p in &pending {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&p.leaver.display),
            esc(&p.leaver.reason),
            crate::clock::rfc3339(p.leaver.since),
            esc(&p.due_at)
        ));
    }
    out.push_str("</table><p>Back in the directory and in scope within the grace period, a user is enabled again with nothing lost.</p>\n");
    Ok(out)
}

/// Draws the charts from the embedded data (plain SVG, no library).
const SCRIPT: &str = r#"
const cycles = JSON.parse(document.getElementById('data').textContent);
const NS = 'http://www.w3.org/2000/svg';
const colors = {create:'#2a7', update:'#37c', enable:'#7b3', disable:'#e90', delete:'#d33',
  add_members:'#96c', remove_members:'#c6a', verify:'#999', failures:'#d33', duration:'#37c'};
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function bars(svg, series, stacks) {
  const W = +svg.getAttribute('width'), H = +svg.getAttribute('height');
  const pad = 30, n = Math.max(series.length, 1), bw = Math.max(2, (W - pad - 10) / n - 2);
  const totals = series.map(s => stacks.reduce((a, k) => a + (s[k] || 0), 0));
  const max = Math.max(1, ...totals);
  el('text', {x: 2, y: 12, 'font-size': 10}, svg).textContent = String(max);
  el('line', {x1: pad, y1: H - 15, x2: W, y2: H - 15, stroke: '#999'}, svg);
  series.forEach((s, i) => {
    let y = H - 15;
    const x = pad + i * (bw + 2);
    stacks.forEach(k => {
      const v = s[k] || 0;
      if (!v) return;
      const h = (H - 30) * v / max;
      y -= h;
      const r = el('rect', {x: x, y: y, width: bw, height: h, fill: colors[k] || '#37c', 'data-value': v}, svg);
      el('title', {}, r).textContent = `cycle ${s.id} (${s.kind}): ${k} ${v}`;
    });
    if (n <= 40 || i % Math.ceil(n / 20) == 0)
      el('text', {x: x, y: H - 3, 'font-size': 9}, svg).textContent = '#' + s.id;
  });
  if (!series.length) el('text', {x: W / 2 - 40, y: H / 2, 'font-size': 12}, svg).textContent = 'no cycles yet';
}
bars(document.getElementById('duration'), cycles.map(c => ({id: c.id, kind: c.kind, duration: c.duration_ms})), ['duration']);
const kinds = [...new Set(cycles.flatMap(c => Object.keys(c.actions)))];
bars(document.getElementById('actions'), cycles.map(c => Object.assign({id: c.id, kind: c.kind}, c.actions)), kinds);
bars(document.getElementById('failures'), cycles.map(c => ({id: c.id, kind: c.kind, failures: c.failures})), ['failures']);
const legend = document.getElementById('legend');
kinds.forEach(k => { const s = document.createElement('span'); s.innerHTML = `<i style="background:${colors[k] || '#37c'}"></i>${k}`; legend.appendChild(s); });
"#;
