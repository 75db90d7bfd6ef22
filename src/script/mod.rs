//! The rhai scripts that decide scope and shape: `mapping.rhai`, `scoping.rhai`
//! (and `migration.rhai` for `migrate`).
//!
//! One sandboxed, immutable Engine; each script compiled once to an AST and called
//! per object without re-running its top level. Limits (operations, call depth,
//! sizes, wall clock) turn a runaway script into an error for that one object. Errors
//! carry the script file and line so an admin can go straight to it.

pub mod datetime;
pub mod defaults;
pub mod helpers;

use crate::error::InputError;
use crate::scim::attribute::{self, Attrs};
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Position, Scope, AST};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Default matching precedence for users when `mapping.rhai` declares none.
pub const DEFAULT_USER_MATCHING: [&str; 2] = ["userName", "externalId"];
/// Default matching for groups: Entra matches groups on displayName.
pub const DEFAULT_GROUP_MATCHING: [&str; 1] = ["displayName"];

/// Per-call wall-clock limit; operations are limited separately.
pub const CALL_TIME_LIMIT: Duration = Duration::from_secs(2);

/// Per-call memory limit: what the call's thread holds may grow this much. rhai's
/// size limits do not see values captured in closures; this does.
pub const MAX_CALL_MEMORY: i64 = 256 << 20;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// What the thread held when the call began.
    static HELD_AT_START: Cell<i64> = const { Cell::new(0) };
}

/// A script failed on one object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ScriptFailure {
    pub file: String,
    pub line: usize,
    pub message: String,
}

struct Script {
    ast: AST,
    /// The top level holds `import`s, which must run before a function call.
    has_imports: bool,
    file: PathBuf,
    hash: String,
    text: String,
}

impl Script {
    /// The line where `fn NAME(` is declared: the best place to point at when rhai
    /// has no position (operation and time limits carry none).
    fn fn_line(&self, name: &str) -> usize {
        let needle = format!("fn {name}(");
        self.text
            .lines()
            .position(|l| l.trim_start().starts_with(&needle))
            .map(|i| i + 1)
            .unwrap_or(0)
    }
}

/// A scoping script's answer: in scope or not, and each named `rule()` with its
/// outcome (what `preview` shows), or the failure.
pub type Scoped = Result<(bool, Vec<(String, bool)>), ScriptFailure>;

/// The compiled scripts of one scripts folder.
pub struct Scripts {
    engine: Engine,
    /// Hash of every `.rhai` file in the folder (imported modules included).
    dir_hash: String,
    uses_unique: bool,
    mapping: Script,
    scoping: Option<Script>,
    migration: Option<Script>,
    /// The built-in `migration.rhai`: answers what the folder's script leaves out
    /// (one written before `match_group` existed).
    builtin_migration: Option<Script>,
    user_matching: Vec<String>,
    group_matching: Vec<String>,
    create_only: Vec<String>,
}

/// Resolves `import "x"` only inside the scripts folder.
struct ScriptsDirResolver {
    inner: rhai::module_resolvers::FileModuleResolver,
    dir: PathBuf,
}

impl rhai::ModuleResolver for ScriptsDirResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<EvalAltResult>> {
        let p = Path::new(path);
        let outside = || {
            EvalAltResult::ErrorInModule(
                path.into(),
                "imports must stay inside the scripts folder"
                    .to_string()
                    .into(),
                pos,
            )
            .into()
        };
        if p.is_absolute()
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(outside());
        }
        // Decided on the file it really is: a symlink inside the folder may point
        // anywhere.
        let file = self.inner.get_file_path(path, None);
        if let (Ok(real), Ok(dir)) = (file.canonicalize(), self.dir.canonicalize()) {
            if !real.starts_with(&dir) {
                return Err(outside());
            }
        }
        self.inner.resolve(engine, source, path, pos)
    }
}

/// Builds the sandboxed engine with the helper library; no imports at all.
pub fn engine() -> Engine {
    engine_for(None)
}

/// The sandboxed engine; `import` resolves inside `dir` only (when given).
pub fn engine_for(dir: Option<&Path>) -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(2_000_000);
    e.set_max_call_levels(48);
    e.set_max_expr_depths(64, 48);
    e.set_max_string_size(1 << 20);
    e.set_max_array_size(100_000);
    e.set_max_map_size(10_000);
    e.set_strict_variables(true);
    // rhai's string interner trims its cache on every call past the limit; mapping
    // scripts gain nothing from it.
    e.set_max_strings_interned(0);
    e.disable_symbol("eval");
    match dir {
        Some(d) => e.set_module_resolver(ScriptsDirResolver {
            inner: rhai::module_resolvers::FileModuleResolver::new_with_path(d),
            dir: d.to_path_buf(),
        }),
        None => e.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new()),
    };
    e.on_print(|s| log::info!(target: "script", "{s}"));
    e.on_debug(|s, src, pos| log::debug!(target: "script", "{}:{}: {s}", src.unwrap_or("script"), pos.line().unwrap_or(0)));
    // The clock is read every 256 operations: reading it on each one cost more than
    // the mapping itself.
    e.on_progress(|ops| {
        if ops % 256 != 0 {
            return None;
        }
        let late = DEADLINE.with(|d| d.get().map(|t| Instant::now() > t).unwrap_or(false));
        let grown = crate::alloc::held() - HELD_AT_START.with(Cell::get);
        if late {
            Some(Dynamic::from(format!(
                "wall-clock limit of {} s exceeded",
                CALL_TIME_LIMIT.as_secs()
            )))
        } else if grown > MAX_CALL_MEMORY {
            Some(Dynamic::from(format!(
                "memory limit of {} MiB exceeded",
                MAX_CALL_MEMORY >> 20
            )))
        } else {
            None
        }
    });
    helpers::register(&mut e);
    e
}

impl Scripts {
    /// Compiles the scripts of a folder. `mapping.rhai` is required; a missing
    /// `scoping.rhai` puts every assigned object in scope.
    pub fn load(dir: &Path) -> Result<Scripts, InputError> {
        let engine = engine_for(Some(dir));
        let mapping = compile(&engine, &dir.join("mapping.rhai"), true)?.ok_or_else(|| {
            InputError::Usage(format!("{}: missing", dir.join("mapping.rhai").display()))
        })?;
        let scoping = compile(&engine, &dir.join("scoping.rhai"), false)?;
        let migration = compile(&engine, &dir.join("migration.rhai"), false)?;
        for (name, arity) in [("map_user", 1), ("map_group", 1)] {
            require_fn(&mapping, name, arity)?;
        }
        if let Some(s) = &scoping {
            for (name, arity) in [("user_in_scope", 1), ("group_in_scope", 1)] {
                require_fn(s, name, arity)?;
            }
        }
        let uses_unique = mapping.text.contains("select_unique_value");
        let mut scripts = Scripts {
            engine,
            dir_hash: dir_hash(dir),
            uses_unique,
            mapping,
            scoping,
            migration,
            builtin_migration: None,
            user_matching: vec![],
            group_matching: vec![],
            create_only: vec![],
        };
        scripts.user_matching = scripts.declared_list("matching", &DEFAULT_USER_MATCHING)?;
        scripts.group_matching =
            scripts.declared_list("group_matching", &DEFAULT_GROUP_MATCHING)?;
        scripts.create_only = scripts.declared_list("create_only", &[])?;
        Ok(scripts)
    }

    /// Loads the folder, using `default` as `migration.rhai` when it has none.
    pub fn load_with_default_migration(dir: &Path, default: &str) -> Result<Scripts, InputError> {
        let mut s = Scripts::load(dir)?;
        let mut ast = s.engine.compile(default).map_err(|e| InputError::Script {
            file: PathBuf::from("(built-in migration.rhai)"),
            line: e.position().line().unwrap_or(0),
            message: e.to_string(),
        })?;
        ast.set_source("(built-in migration.rhai)");
        s.builtin_migration = Some(Script {
            ast,
            has_imports: false,
            file: PathBuf::from("(built-in migration.rhai)"),
            hash: String::new(),
            text: default.to_string(),
        });
        Ok(s)
    }

    /// A content hash of the scripts (and modules they import): a change means a
    /// full re-evaluation, as Entra re-evaluates after a mapping or scoping change.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.mapping.hash.as_bytes());
        if let Some(s) = &self.scoping {
            h.update(s.hash.as_bytes());
        }
        h.update(self.dir_hash.as_bytes());
        format!("{:x}", h.finalize())
    }

    /// Whether the mapping calls `select_unique_value` (which needs the values
    /// already in use).
    pub fn uses_unique_values(&self) -> bool {
        self.uses_unique
    }

    pub fn user_matching(&self) -> &[String] {
        &self.user_matching
    }
    pub fn group_matching(&self) -> &[String] {
        &self.group_matching
    }
    /// Attributes written only when the object is created (Entra's "Only during
    /// object creation").
    pub fn create_only(&self) -> &[String] {
        &self.create_only
    }

    /// Reads an optional `fn NAME()` returning an array of attribute paths.
    fn declared_list(&self, name: &str, default: &[&str]) -> Result<Vec<String>, InputError> {
        if !has_fn(&self.mapping, name, 0) {
            return Ok(default.iter().map(|s| s.to_string()).collect());
        }
        let v = self
            .call(&self.mapping, name, vec![])
            .map_err(|f| InputError::Script {
                file: f.file.into(),
                line: f.line,
                message: f.message,
            })?;
        let list: Vec<String> = v
            .into_array()
            .ok()
            .map(|a| a.into_iter().filter_map(|d| d.into_string().ok()).collect())
            .ok_or_else(|| InputError::Script {
                file: self.mapping.file.clone(),
                line: 0,
                message: format!("fn {name}() must return an array of attribute paths"),
            })?;
        for p in &list {
            attribute::AttrPath::parse(p).map_err(|m| InputError::Script {
                file: self.mapping.file.clone(),
                line: 0,
                message: format!("fn {name}(): {m}"),
            })?;
        }
        Ok(list)
    }

    fn call(
        &self,
        script: &Script,
        name: &str,
        args: Vec<Dynamic>,
    ) -> Result<Dynamic, ScriptFailure> {
        let mut scope = Scope::new();
        DEADLINE.with(|d| d.set(Some(Instant::now() + CALL_TIME_LIMIT)));
        HELD_AT_START.with(|h| h.set(crate::alloc::held()));
        // Imports (embedded at compile time) bind their aliases when the top level
        // runs; scripts without imports skip it.
        let opts = CallFnOptions::new()
            .eval_ast(script.has_imports)
            .rewind_scope(true);
        let r =
            self.engine
                .call_fn_with_options::<Dynamic>(opts, &mut scope, &script.ast, name, args);
        DEADLINE.with(|d| d.set(None));
        r.map_err(|e| {
            let mut f = failure(&script.file, name, &e);
            if f.line == 0 {
                f.line = script.fn_line(name);
            }
            f
        })
    }

    fn call_bool(
        &self,
        script: &Script,
        name: &str,
        record: &Map<String, Value>,
    ) -> Result<bool, ScriptFailure> {
        let arg = to_dynamic(record, &script.file)?;
        let v = self.call(script, name, vec![arg])?;
        v.as_bool().map_err(|t| ScriptFailure {
            file: script.file.display().to_string(),
            line: 0,
            message: format!("{name} must return true or false, not {t}"),
        })
    }

    fn call_map(&self, name: &str, record: &Map<String, Value>) -> Result<Attrs, ScriptFailure> {
        let file = &self.mapping.file;
        let arg = to_dynamic(record, file)?;
        let v = self.call(&self.mapping, name, vec![arg])?;
        let bad = |message: String| ScriptFailure {
            file: file.display().to_string(),
            line: 0,
            message,
        };
        if !v.is_map() {
            return Err(bad(format!(
                "{name} must return an object map, not {}",
                v.type_name()
            )));
        }
        let json: Value = rhai::serde::from_dynamic(&v).map_err(|e| bad(format!("{name}: {e}")))?;
        let Value::Object(m) = json else {
            return Err(bad(format!("{name} must return an object map")));
        };
        let flat = attribute::flatten(&m).map_err(|e| bad(format!("{name}: {e}")))?;
        Ok(attribute::apply_markers(flat))
    }

    pub fn map_user(&self, record: &Map<String, Value>) -> Result<Attrs, ScriptFailure> {
        self.call_map("map_user", record)
    }
    pub fn map_group(&self, record: &Map<String, Value>) -> Result<Attrs, ScriptFailure> {
        self.call_map("map_group", record)
    }
    pub fn user_in_scope(&self, record: &Map<String, Value>) -> Result<bool, ScriptFailure> {
        self.user_scope(record).map(|(b, _)| b)
    }
    pub fn group_in_scope(&self, record: &Map<String, Value>) -> Result<bool, ScriptFailure> {
        self.group_scope(record).map(|(b, _)| b)
    }

    /// The scope decision and the `rule(name, …)` clauses evaluated on the way.
    pub fn user_scope(&self, record: &Map<String, Value>) -> Scoped {
        self.scope("user_in_scope", record)
    }
    pub fn group_scope(&self, record: &Map<String, Value>) -> Scoped {
        self.scope("group_in_scope", record)
    }

    fn scope(
        &self,
        name: &str,
        record: &Map<String, Value>,
    ) -> Result<(bool, Vec<(String, bool)>), ScriptFailure> {
        match &self.scoping {
            Some(s) => {
                helpers::clear_rules();
                let r = self.call_bool(s, name, record);
                let rules = helpers::take_rules();
                r.map(|b| (b, rules))
            }
            None => Ok((true, vec![])),
        }
    }

    /// Calls `migration.rhai` `match_member(member, candidates)`.
    pub fn match_member(&self, member: &Value, candidates: &Value) -> Result<Value, ScriptFailure> {
        self.call_migration("match_member", member, candidates)
    }

    /// Calls `migration.rhai` `match_group(group, candidates)`.
    pub fn match_group(&self, group: &Value, candidates: &Value) -> Result<Value, ScriptFailure> {
        self.call_migration("match_group", group, candidates)
    }

    /// The folder's `migration.rhai` when it declares `name`, else the built-in one.
    fn call_migration(
        &self,
        name: &str,
        object: &Value,
        candidates: &Value,
    ) -> Result<Value, ScriptFailure> {
        let Some(s) = [&self.migration, &self.builtin_migration]
            .into_iter()
            .flatten()
            .find(|s| has_fn(s, name, 2))
        else {
            return Ok(Value::Null);
        };
        let conv = |v: &Value| {
            rhai::serde::to_dynamic(v).map_err(|e| ScriptFailure {
                file: s.file.display().to_string(),
                line: 0,
                message: e.to_string(),
            })
        };
        let out = self.call(s, name, vec![conv(object)?, conv(candidates)?])?;
        rhai::serde::from_dynamic(&out).map_err(|e| ScriptFailure {
            file: s.file.display().to_string(),
            line: 0,
            message: format!("{name}: {e}"),
        })
    }

    pub fn mapping_file(&self) -> &Path {
        &self.mapping.file
    }
    pub fn scoping_file(&self) -> Option<&Path> {
        self.scoping.as_ref().map(|s| s.file.as_path())
    }
}

fn to_dynamic(record: &Map<String, Value>, file: &Path) -> Result<Dynamic, ScriptFailure> {
    rhai::serde::to_dynamic(record).map_err(|e| ScriptFailure {
        file: file.display().to_string(),
        line: 0,
        message: format!("cannot pass the record to the script: {e}"),
    })
}

fn compile(engine: &Engine, path: &Path, required: bool) -> Result<Option<Script>, InputError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => {
            return Err(InputError::Script {
                file: path.to_path_buf(),
                line: 0,
                message: format!("cannot read: {e}"),
            })
        }
    };
    // Self-contained: `import`ed modules are resolved now and embedded, so functions
    // called later without running the top level still see them.
    let mut ast = engine
        .compile_into_self_contained(&Scope::new(), &text)
        .map_err(|e| {
            let message = match e.as_ref() {
                EvalAltResult::ErrorParsing(t, _) => t.to_string(),
                EvalAltResult::ErrorInModule(m, inner, _) => format!("import {m:?}: {inner}"),
                other => other.to_string(),
            };
            let mut line = e.position().line().unwrap_or(0);
            if let (0, EvalAltResult::ErrorInModule(m, _, _)) = (line, e.as_ref()) {
                // Compile-time resolution carries no position: point at the import.
                line = text
                    .lines()
                    .position(|l| l.contains("import") && l.contains(m.as_str()))
                    .map(|i| i + 1)
                    .unwrap_or(0);
            }
            InputError::Script {
                file: path.to_path_buf(),
                line,
                message,
            }
        })?;
    ast.set_source(path.display().to_string());
    let has_imports = text.contains("import");
    Ok(Some(Script {
        ast,
        has_imports,
        file: path.to_path_buf(),
        hash: format!("{:x}", Sha256::digest(text.as_bytes())),
        text,
    }))
}

/// Hash of every `.rhai` file in a folder, in name order.
fn dir_hash(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().map(|x| x == "rhai").unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update(std::fs::read(&f).unwrap_or_default());
    }
    format!("{:x}", h.finalize())
}

fn has_fn(s: &Script, name: &str, arity: usize) -> bool {
    s.ast
        .iter_functions()
        .any(|f| f.name == name && f.params.len() == arity)
}

fn require_fn(s: &Script, name: &str, arity: usize) -> Result<(), InputError> {
    if has_fn(s, name, arity) {
        Ok(())
    } else {
        Err(InputError::Script {
            file: s.file.clone(),
            line: 0,
            message: format!(
                "missing function `fn {name}({})`",
                if arity == 1 { "x" } else { "" }
            ),
        })
    }
}

/// The innermost error and its position: rhai wraps errors raised inside a function
/// in "error in call to function" layers.
fn failure(file: &Path, called: &str, e: &EvalAltResult) -> ScriptFailure {
    fn dig(e: &EvalAltResult) -> (String, Position) {
        match e {
            EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => dig(inner),
            EvalAltResult::ErrorTerminated(v, pos) => (format!("stopped: {v}"), *pos),
            EvalAltResult::ErrorTooManyOperations(pos) => (
                "stopped: operation limit exceeded (runaway loop?)".into(),
                *pos,
            ),
            other => (other.to_string(), other.position()),
        }
    }
    let (msg, pos) = dig(e);
    let msg = msg.split(" (line ").next().unwrap_or(&msg).to_string();
    ScriptFailure {
        file: file.display().to_string(),
        line: pos.line().unwrap_or(0),
        message: format!("in {called}: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scripts_with(mapping: &str) -> Result<Scripts, InputError> {
        let dir = std::env::temp_dir().join(format!(
            "scimsync-script-{}-{}",
            std::process::id(),
            helpers::random_token(6)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| InputError::Usage(e.to_string()))?;
        std::fs::write(dir.join("mapping.rhai"), mapping)
            .map_err(|e| InputError::Usage(e.to_string()))?;
        Scripts::load(&dir)
    }

    #[test]
    fn runaway_script_is_stopped_with_line() {
        let s = scripts_with(
            "fn map_user(u) {\n let x = 0;\n loop { x += 1; }\n}\nfn map_group(g) { #{} }",
        )
        .expect("compiles");
        let e = s.map_user(&Map::new()).expect_err("must fail");
        assert!(e.message.contains("stopped"), "{e}");
        // Limits carry no position in rhai: the error points at the function.
        assert_eq!(e.line, 1, "{e}");
    }

    #[test]
    fn missing_attribute_is_unit() {
        let s = scripts_with("fn map_user(u) { #{userName: u.userPrincipalName, title: u.jobTitle} }\nfn map_group(g) { #{} }")
            .expect("compiles");
        let mut rec = Map::new();
        rec.insert("userPrincipalName".into(), Value::String("a@x.com".into()));
        let a = s.map_user(&rec).expect("maps");
        assert_eq!(a.get("title"), Some(&Value::Null));
    }

    #[test]
    fn compile_error_has_line() {
        let e = scripts_with("fn map_user(u) {\n  let = 3;\n}\nfn map_group(g) { #{} }")
            .err()
            .expect("must fail");
        match e {
            InputError::Script { line, .. } => assert_eq!(line, 2),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn closures_cannot_carry_memory_past_the_cap() {
        // Each closure captures its own 1 MiB string: rhai's size limits see one
        // array of function pointers, the allocator sees a gigabyte coming.
        let s = scripts_with(
            "fn map_user(u) {\n let big = \"x\";\n for i in 0..19 { big += big; }\n let fs = [];\n for i in 0..2000 { let s = big + i; fs.push(|| s); }\n #{userName: \"a\"}\n}\nfn map_group(g) { #{} }",
        )
        .expect("compiles");
        let before = crate::alloc::held();
        let e = s.map_user(&Map::new()).expect_err("must be stopped");
        assert!(e.message.contains("memory limit"), "{e}");
        assert!(
            crate::alloc::held() - before < 64 << 20,
            "the memory went back when the call was stopped"
        );
    }

    #[test]
    fn eval_is_disabled() {
        assert!(scripts_with("fn map_user(u) { eval(\"1\") }\nfn map_group(g) { #{} }").is_err());
    }
}
