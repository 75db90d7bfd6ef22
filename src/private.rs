//! Private files: what scimsync writes is the admin's alone.
//!
//! The state holds the whole directory cache and the provisioning log (people's
//! names, addresses, what happened to their accounts); a config may hold a token. So
//! every file scimsync creates is 0600 and every folder 0700, whatever the umask, and
//! a state file found readable by others is tightened when it is opened.

use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Options that create a file readable and writable by its owner only.
pub fn options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    o.mode(0o600);
    o
}

/// Creates a folder (and its parents) that only its owner may enter.
pub fn create_dir(path: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    b.mode(0o700);
    b.create(path)
}

/// Writes a whole file as 0600: a new file next to it, then renamed over it, so a
/// reader never sees half of it and an old file's wider mode does not carry over.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, |w| w.write_all(bytes))
}

/// `write`, with the content written by `fill` as it is made (a large document
/// need not be whole in memory first).
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let f = options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Takes group and other access away from an existing file; true when it had any.
pub fn tighten(path: &Path) -> bool {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700));
            return true;
        }
    }
    let _ = path;
    false
}

/// Whether a file can be read by users other than its owner.
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        return meta.permissions().mode() & 0o044 != 0;
    }
    let _ = path;
    false
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_are_private_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!(
            "scimsync-private-{}-{}",
            std::process::id(),
            crate::ids::random_hex(6)
        ));
        let sub = dir.join("a/b");
        create_dir(&sub).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        let f = sub.join("x.toml");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&f, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(readable_by_others(&f));
        assert!(tighten(&f));
        assert_eq!(mode(&f), 0o600);
        assert!(!tighten(&f));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
