//! `scimsync import-entra`: Entra's synchronization schema → `mapping.rhai` and
//! `scoping.rhai` in the configured scripts folder, all or nothing.

use super::*;
use crate::takeover::{self, Summary};

/// Where the schema comes from.
pub(super) enum SchemaFrom<'a> {
    File(&'a Path),
    Job(&'a str),
}

pub(super) fn import_entra(cli: &Cli, from: SchemaFrom<'_>, force: bool) -> Result<i32, Error> {
    let (document, origin, settings) = match from {
        SchemaFrom::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                InputError::Usage(format!("{}: cannot read the schema: {e}", path.display()))
            })?;
            (text, path.display().to_string(), load_for_reading(cli)?)
        }
        SchemaFrom::Job(job) => {
            let settings = load(cli)?;
            let Some(mut graph) = crate::source::graph_source(&settings.source) else {
                return Err(InputError::Usage(
                    "import-entra --job reads the schema through Graph: [source] type must be \"graph\"".into(),
                )
                .into());
            };
            let text = graph.synchronization_schema(job)?;
            (text, format!("provisioning job {job}"), settings)
        }
    };
    let translation = takeover::translate(&document, &origin)
        .map_err(|e| InputError::Usage(format!("{origin}: {e}; nothing written")))?;
    let dir = &settings.scripts_dir;
    let files = [
        (dir.join("mapping.rhai"), &translation.mapping),
        (dir.join("scoping.rhai"), &translation.scoping),
    ];
    if !force {
        if let Some((p, _)) = files.iter().find(|(p, _)| p.exists()) {
            return Err(InputError::Usage(format!(
                "{} exists; import-entra replaces mapping.rhai and scoping.rhai only with --force; nothing written",
                p.display()
            ))
            .into());
        }
    }
    verify(dir, &translation)?;
    write_both(dir, &files)?;
    print_summary(&origin, dir, &translation.summary, &settings);
    Ok(exit::OK)
}

/// The generated scripts compile and declare what scimsync reads, before
/// anything is written (a folder of their own, with the rest of the scripts
/// folder's modules).
fn verify(dir: &Path, t: &takeover::Translation) -> Result<(), Error> {
    let tmp = std::env::temp_dir().join(format!("scimsync-import-{}", crate::ids::random_hex(8)));
    let result = (|| -> Result<(), Error> {
        std::fs::create_dir_all(&tmp).map_err(Error::file(&tmp))?;
        std::fs::write(tmp.join("mapping.rhai"), &t.mapping).map_err(Error::file(&tmp))?;
        std::fs::write(tmp.join("scoping.rhai"), &t.scoping).map_err(Error::file(&tmp))?;
        Scripts::load(&tmp).map_err(|e| {
            InputError::Usage(format!(
                "the generated scripts for {} do not load ({e}); nothing written",
                dir.display()
            ))
        })?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Both files or neither: each is written beside its place, then both renamed.
fn write_both(dir: &Path, files: &[(PathBuf, &String); 2]) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(Error::file(dir))?;
    let staged: Vec<PathBuf> = files
        .iter()
        .map(|(p, _)| p.with_extension("rhai.new"))
        .collect();
    for ((_, text), tmp) in files.iter().zip(&staged) {
        if let Err(e) = std::fs::write(tmp, text) {
            for t in &staged {
                let _ = std::fs::remove_file(t);
            }
            return Err(Error::file(tmp)(e));
        }
    }
    for ((path, _), tmp) in files.iter().zip(&staged) {
        std::fs::rename(tmp, path).map_err(Error::file(path))?;
    }
    Ok(())
}

fn print_summary(origin: &str, dir: &Path, s: &Summary, settings: &Settings) {
    let names = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    println!(
        "Translated {origin} into {} and {}:",
        dir.join("mapping.rhai").display(),
        dir.join("scoping.rhai").display()
    );
    println!(
        "  users:  {} attribute mappings; matching {}",
        s.user_mappings,
        names(&s.user_matching)
    );
    println!(
        "  groups: {} attribute mappings; matching {}; members by scimsync",
        s.group_mappings,
        names(&s.group_matching)
    );
    println!("  only on create: {}", names(&s.create_only));
    println!("  defaults on create: {}", names(&s.defaults));
    println!(
        "  scoping: {} filter group(s) for users, {} for groups",
        s.user_filter_groups, s.group_filter_groups
    );
    let mut advice = s.advice.clone();
    if let crate::config::SourceSettings::Graph { attributes, .. } = &settings.source {
        let extra: std::collections::BTreeSet<&str> = s
            .reads
            .iter()
            .filter_map(|a| crate::takeover::translate::graph_property(a))
            .filter(|p| !crate::source::graph::USER_ATTRIBUTES.contains(p))
            .filter(|p| !attributes.iter().any(|a| a == p))
            .collect();
        if !extra.is_empty() {
            advice.push(format!("[source] attributes = {extra:?}   # read by the scripts, not in Graph's default $select"));
        }
    }
    if advice.is_empty() {
        println!("Config: nothing to change.");
    } else {
        println!(
            "Config the schema implies ({}):",
            settings.config_path.display()
        );
        for a in advice {
            println!("  {a}");
        }
    }
    println!("Next: `scimsync plan` — every account Entra provisioned should show as adopt, with no changes.");
}
