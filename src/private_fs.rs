//! Files and directories that hold decisions, requests or ledger rows:
//! created readable by their owner only, and tightened if an older
//! version (or an operator) left them readable by others.

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file this module creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of directories it creates (existing ones are left alone: an
/// operator may share a parent on purpose).
pub const DIR_MODE: u32 = 0o700;

/// `mkdir -p` with 0700 for the directories it creates.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Creates the parent directory of `path` if needed.
pub fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => create_dir_all(dir),
        None => Ok(()),
    }
}

/// Opens `path` for appending, creating it 0600. A file that already
/// exists with group or other bits (written by an older release that did
/// not set a mode) is tightened to 0600, since it holds the same secrets.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(&file)?;
    Ok(file)
}

/// Creates `path`, failing if it exists, with mode 0600.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Removes group and other permissions from an open file.
pub fn tighten(file: &File) -> std::io::Result<()> {
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_and_dirs_are_private_and_old_files_are_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);

        let fresh = dir.join("fresh.log");
        open_append(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);

        let old = dir.join("old.log");
        std::fs::write(&old, b"x").unwrap();
        std::fs::set_permissions(&old, Permissions::from_mode(0o644)).unwrap();
        open_append(&old).unwrap();
        assert_eq!(mode(&old), 0o600);

        let made = dir.join("new.json");
        create_new(&made).unwrap();
        assert_eq!(mode(&made), 0o600);
        assert!(create_new(&made).is_err());
    }
}
