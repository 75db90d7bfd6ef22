//! Reviewed plans: `plan --out FILE` saves a plan with a fingerprint of what it was
//! made from; `sync --plan FILE` applies exactly that plan, or refuses.
//!
//! A plan someone approved must be what runs, nothing more. So `sync --plan` makes
//! the plan again through the same pipeline and applies it only when nothing it was
//! made from has moved — the state (no cycle ran since), the scripts and config, the
//! directory as read and evaluated, the target facts read — and the plan made now is
//! the saved one, action for action. Anything else is a stale plan (exit 2).

use crate::error::{Error, InputError};
use crate::plan::Plan;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The format of a saved plan; a file of another format is refused.
pub const FORMAT: u32 = 1;

/// What a plan was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The source watermark the read started from.
    pub watermark: Option<String>,
    /// The directory as read and evaluated (`evaluated_hash`).
    pub source: String,
    /// Scripts, switches and policies (`cycle::evaluation_hash`).
    pub evaluation: String,
    /// The state's version: every state transaction moves it.
    pub state: String,
    /// The target facts read (`Facts::hash`).
    pub facts: String,
}

impl Fingerprint {
    /// What moved between `self` (saved) and `now`, in words.
    pub fn moved(&self, now: &Fingerprint) -> Option<&'static str> {
        if self.state != now.state || self.watermark != now.watermark {
            Some("the state changed since it was made (a cycle ran)")
        } else if self.evaluation != now.evaluation {
            Some("the scripts or the config changed since it was made")
        } else if self.source != now.source {
            Some("the directory changed since it was made")
        } else if self.facts != now.facts {
            Some("the target changed since it was made")
        } else {
            None
        }
    }
}

/// A plan as `plan --out` saves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: u32,
    /// "initial", "incremental" or "full".
    pub cycle: String,
    pub full: bool,
    /// Nothing changed: the plan is to do nothing.
    pub unchanged: bool,
    pub fingerprint: Option<Fingerprint>,
    /// Why the gate holds the plan's destructive actions, if it does.
    pub held: Option<String>,
    /// The plan document's actions (`Action::document`).
    pub actions: Vec<Value>,
}

impl SavedPlan {
    pub fn read(path: &Path) -> Result<SavedPlan, Error> {
        let bad =
            |m: String| -> Error { InputError::Usage(format!("{}: {m}", path.display())).into() };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let saved: SavedPlan = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a plan saved by `scimsync plan --out`: {e}")))?;
        if saved.format != FORMAT {
            return Err(bad(format!(
                "a saved plan of format {}, this scimsync reads format {FORMAT}",
                saved.format
            )));
        }
        Ok(saved)
    }

    /// Written owner-only: a plan holds the attributes it sends.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        crate::private::write_with(path, |w| Ok(serde_json::to_writer_pretty(w, self)?))
            .map_err(Error::file(path))
    }

    /// The plan made now is applied only if it is this one and nothing it was made
    /// from has moved.
    pub fn check(&self, fingerprint: Option<&Fingerprint>, plan: &Plan) -> Result<(), Error> {
        if self.unchanged {
            return Err(stale(
                "the directory or the scripts changed since it was made",
            ));
        }
        let moved = match (&self.fingerprint, fingerprint) {
            (Some(saved), Some(current)) => saved.moved(current),
            _ => Some("it has no fingerprint"),
        };
        if let Some(why) = moved {
            return Err(stale(why));
        }
        // Compared one document at a time: a million at once were gigabytes.
        let same = plan.actions.len() == self.actions.len()
            && (plan.actions.iter().zip(&self.actions)).all(|(a, saved)| a.document() == *saved);
        if !same {
            return Err(stale(&format!(
                "the plan made now differs ({} actions, {} saved)",
                plan.actions.len(),
                self.actions.len()
            )));
        }
        Ok(())
    }

    /// Nothing changed now: right only if nothing was to be done.
    pub fn check_unchanged(&self) -> Result<(), Error> {
        if self.unchanged || self.actions.is_empty() {
            Ok(())
        } else {
            Err(stale("the state changed since it was made (a cycle ran)"))
        }
    }
}

fn stale(why: &str) -> Error {
    InputError::Usage(format!("stale plan: {why}; run plan again")).into()
}

/// A digest of the directory as evaluated: ids, decisions, mapped attributes and
/// members.
pub fn evaluated_hash(evaluated: &crate::evaluate::Evaluations) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for e in evaluated.iter() {
        h.update(format!(
            "{}\0{}\0{}\0{:?}\0",
            e.kind.as_str(),
            e.source_id,
            e.display,
            e.decision
        ));
        if let Some(a) = &e.attrs {
            h.update(serde_json::to_string(a).unwrap_or_default());
        }
        h.update(e.members.join("\0"));
        h.update(b"\n");
    }
    format!("{:x}", h.finalize())
}
