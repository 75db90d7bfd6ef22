//! Reviewed plans: `plan --out FILE` saves a plan with a fingerprint of what it was
//! made from; `sync --plan FILE` applies exactly that plan, or refuses.
//!
//! A plan someone approved must be what runs, nothing more. So `sync --plan` makes
//! the plan again through the same pipeline and applies it only when nothing it was
//! made from has moved — the state (no cycle ran since), the scripts and config, the
//! directory as read and evaluated, the target facts read — and the plan made now is
//! the saved one, action for action. Anything else is a stale plan (exit 2).

use crate::error::{Error, InputError};
use crate::evaluate::spill::Spill;
use crate::plan::{Action, Plan};
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

/// A plan as `plan --out` saved it, read back to be applied: the actions as one
/// digest of their documents' digests (`Actions`), so that a saved plan of a
/// million actions is a few bytes to hold, not the gigabytes of its documents.
#[derive(Debug, Clone, Deserialize)]
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
    /// The plan document's actions (`Action::document`), as read.
    pub actions: Actions,
}

/// A list of action documents, known by how many there are and one digest of
/// their digests (`digest`) in order: equal lists, equal `Actions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actions {
    pub count: usize,
    digest: [u8; 32],
}

/// `Actions` made a document at a time.
#[derive(Default)]
struct Tally {
    count: usize,
    digests: sha2::Sha256,
}

impl Tally {
    fn add(&mut self, document: &Value) {
        use sha2::Digest;
        self.count += 1;
        self.digests.update(digest(document));
    }

    fn done(self) -> Actions {
        use sha2::Digest;
        Actions {
            count: self.count,
            digest: self.digests.finalize().into(),
        }
    }
}

/// Read a document at a time, each dropped once counted.
impl<'de> Deserialize<'de> for Actions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Actions, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Actions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of action documents")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Actions, A::Error> {
                let mut tally = Tally::default();
                while let Some(v) = seq.next_element::<Value>()? {
                    tally.add(&v);
                }
                Ok(tally.done())
            }
        }
        d.deserialize_seq(Visitor)
    }
}

/// A plan to save (`plan --out`): the document `SavedPlan` reads, its fields in
/// that order, its actions' documents made one at a time as they are written.
#[derive(Serialize)]
pub struct Saving<'a> {
    pub format: u32,
    pub cycle: String,
    pub full: bool,
    pub unchanged: bool,
    pub fingerprint: Option<&'a Fingerprint>,
    pub held: Option<&'a str>,
    pub actions: Documents<'a>,
}

impl Saving<'_> {
    /// Written owner-only (a plan holds the attributes it sends), as it is
    /// serialized.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        crate::private::write_with(path, |w| Ok(serde_json::to_writer_pretty(w, self)?))
            .map_err(Error::file(path))
    }
}

/// A plan's actions as their documents (`Action::document`), each made as it is
/// written and dropped after; a create whose attributes wait in the spill has
/// them read back for its document.
pub struct Documents<'a> {
    pub actions: &'a [Action],
    pub spill: Option<&'a Spill>,
}

impl Documents<'_> {
    pub const NONE: Documents<'static> = Documents {
        actions: &[],
        spill: None,
    };
}

impl Serialize for Documents<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.actions.len()))?;
        for a in self.actions {
            seq.serialize_element(&document(a, self.spill).map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

/// An action's document, with its attributes read back from the spill if they
/// wait there.
fn document(a: &Action, spill: Option<&Spill>) -> Result<Value, Error> {
    match crate::evaluate::spill::attrs_back(&a.attrs, a.spilled, spill, &a.display)? {
        std::borrow::Cow::Borrowed(_) => Ok(a.document()),
        std::borrow::Cow::Owned(attrs) => {
            let mut whole = a.clone();
            whole.attrs = attrs;
            Ok(whole.document())
        }
    }
}

/// The digest an action's document is known by in a saved plan: SHA-256 of its
/// compact JSON (object keys sorted, so equal documents have equal digests).
fn digest(document: &Value) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(document.to_string().as_bytes()).into()
}

impl SavedPlan {
    pub fn read(path: &Path) -> Result<SavedPlan, Error> {
        let bad =
            |m: String| -> Error { InputError::Usage(format!("{}: {m}", path.display())).into() };
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let saved: SavedPlan = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| bad(format!("not a plan saved by `scimsync plan --out`: {e}")))?;
        if saved.format != FORMAT {
            return Err(bad(format!(
                "a saved plan of format {}, this scimsync reads format {FORMAT}",
                saved.format
            )));
        }
        Ok(saved)
    }

    /// The plan made now is applied only if it is this one and nothing it was made
    /// from has moved. `spill` holds the attributes of the creates that wait there.
    pub fn check(
        &self,
        fingerprint: Option<&Fingerprint>,
        plan: &Plan,
        spill: Option<&Spill>,
    ) -> Result<(), Error> {
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
        // One document at a time: a million at once were gigabytes.
        let mut now = Tally::default();
        for a in &plan.actions {
            now.add(&document(a, spill)?);
        }
        if now.done() != self.actions {
            return Err(stale(&format!(
                "the plan made now differs ({} actions, {} saved)",
                plan.actions.len(),
                self.actions.count
            )));
        }
        Ok(())
    }

    /// Nothing changed now: right only if nothing was to be done.
    pub fn check_unchanged(&self) -> Result<(), Error> {
        if self.unchanged || self.actions.count == 0 {
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
/// members. A new user's attributes that wait in the spill are read back for it.
pub fn evaluated_hash(
    evaluated: &crate::evaluate::Evaluations,
    spill: Option<&Spill>,
) -> Result<String, Error> {
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
        match (e.spilled, spill) {
            (Some(row), Some(spill)) => h.update(serde_json::to_string(&spill.get(row)?)?),
            _ => {
                if let Some(a) = &e.attrs {
                    h.update(serde_json::to_string(a)?);
                }
            }
        }
        h.update(e.members.join("\0"));
        h.update(b"\n");
    }
    Ok(format!("{:x}", h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A document read back from a saved file has the digest of the one made
    /// now when they are equal, whatever the order of its keys in the file, and
    /// another when one value differs.
    #[test]
    fn equal_documents_have_equal_digests() -> Result<(), Error> {
        let made = json!({"op": "create", "changes": [{"path": "name.familyName", "old": null, "new": "Lovelace"}], "n": 1.5});
        let read: Value = serde_json::from_str(
            r#"{"n": 1.5, "changes": [{"new": "Lovelace", "path": "name.familyName", "old": null}], "op": "create"}"#,
        )?;
        assert_eq!(digest(&made), digest(&read));
        let mut other = read.clone();
        other["changes"][0]["new"] = json!("Byron");
        assert_ne!(digest(&made), digest(&other));

        // A saved list, read a document at a time, is the list made now in the
        // same order, and only then.
        let tally = |docs: &[&Value]| {
            let mut t = Tally::default();
            docs.iter().for_each(|d| t.add(d));
            t.done()
        };
        let saved: Actions = serde_json::from_value(json!([read, other]))?;
        assert_eq!(saved.count, 2);
        assert_eq!(saved, tally(&[&made, &other]));
        assert_ne!(saved, tally(&[&other, &made]));
        assert_ne!(saved, tally(&[&made]));
        Ok(())
    }
}
