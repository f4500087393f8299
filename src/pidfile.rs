//! The pid file (`<pidfile>` in the configuration), as dbus-daemon keeps it.
//!
//! It is written as root, before privileges are dropped, into a directory
//! such as /run, so it is created with O_CREAT|O_EXCL|O_NOFOLLOW: it must
//! not exist yet (no check-then-write race), and a symlink planted there is
//! refused instead of followed.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Refuses to start when the pid file exists: dbus-daemon checks this
/// before forking, so the error reaches the caller's terminal. (A
/// dangling symlink passes this check, as with dbus-daemon's stat(), and
/// is refused by [`write`].)
pub fn check_absent(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Err(format!(
            "The pid file \"{}\" exists, if the message bus is not running, remove this file",
            path.display()
        ));
    }
    Ok(())
}

/// Creates the pid file holding `pid`, mode 0644 whatever the umask.
///
/// dbus-daemon opens it with mode 0644 and lets the umask narrow that
/// (0600 under umask 077); busbar always makes it world-readable, as a pid
/// file is meant to be read by tools that are not root.
pub fn write(path: &Path, pid: u32) -> Result<(), String> {
    let fail = |e: std::io::Error| {
        format!(
            "Failed to open \"{}\": {}",
            path.display(),
            crate::errtext::strerror(&e)
        )
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(fail)?;
    let written = f
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| f.write_all(format!("{pid}\n").as_bytes()));
    if let Err(e) = written {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(format!(
            "Failed to write to \"{}\": {}",
            path.display(),
            crate::errtext::strerror(&e)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_existing_files_and_symlinks() {
        let dir = std::env::temp_dir().join(format!("busbar-pidfile-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pid");
        write(&p, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "42\n");
        assert!(check_absent(&p).unwrap_err().contains("exists"));
        assert!(write(&p, 43).unwrap_err().contains("File exists"));
        let link = dir.join("link");
        std::os::unix::fs::symlink(dir.join("target"), &link).unwrap();
        assert!(check_absent(&link).is_ok());
        assert!(write(&link, 44).is_err());
        assert!(!dir.join("target").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
