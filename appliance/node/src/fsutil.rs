//! Writing files the way a custody appliance must: atomically, with private permissions.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename) with mode 0600. Fails if
/// `path` exists: nothing is ever overwritten.
pub fn write_new_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists; refusing to overwrite it", path.display()),
        ));
    }
    let tmp = path.with_extension("tmp-write");
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    // link(2) fails if the target appeared meanwhile, unlike rename(2).
    let linked = fs::hard_link(&tmp, path);
    fs::remove_file(&tmp)?;
    linked?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
