//! Who is at a console, as dbus-daemon decides it on Linux: a file named
//! after the user in /run/console (pam_console), or a user that systemd-logind
//! lists with a seat (`SEATS=` in /run/systemd/users/UID). The answer comes
//! from a [`Console`] kept in memory; a [`ConsoleWatch`] (inotify, polled by
//! the daemon's loop) says when to rescan, so no connection reads a file.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// systemd-logind's per-user state files.
pub const SYSTEMD_USERS: &str = "/run/systemd/users";
/// pam_console's directory of console users.
pub const CONSOLE_DIR: &str = "/run/console";

/// The console state: uids with a seat, and names in the console directory.
#[derive(Debug, Default, Clone)]
pub struct Console {
    seat_uids: HashSet<u32>,
    console_names: HashSet<String>,
    /// Rescans done (for tests).
    pub scans: u64,
}

/// Whether a logind user file lists a seat.
fn has_seat(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("SEATS=") && l.len() > 6)
}

impl Console {
    /// Reads the state from the standard directories.
    pub fn scan() -> Console {
        let mut c = Console::default();
        c.rescan(Path::new(SYSTEMD_USERS), Path::new(CONSOLE_DIR));
        c
    }

    /// Re-reads the state from `users` (logind) and `console` (pam_console).
    pub fn rescan(&mut self, users: &Path, console: &Path) {
        self.scans += 1;
        self.seat_uids.clear();
        self.console_names.clear();
        if let Ok(dir) = std::fs::read_dir(users) {
            for e in dir.flatten() {
                let Some(uid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                if std::fs::read_to_string(e.path()).is_ok_and(|t| has_seat(&t)) {
                    self.seat_uids.insert(uid);
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir(console) {
            for e in dir.flatten() {
                // As a lookup of /run/console/NAME would: the entry exists
                // (a dangling symlink does not count).
                if e.path().exists() {
                    if let Some(n) = e.file_name().to_str() {
                        self.console_names.insert(n.to_owned());
                    }
                }
            }
        }
    }

    /// Whether the user's name can change the answer (the console
    /// directory is not empty).
    pub fn names_matter(&self) -> bool {
        !self.console_names.is_empty()
    }

    /// Whether `uid` is at a console; `name` is asked for the user's login
    /// name only when the console directory is not empty.
    pub fn at_console(&self, uid: u32, name: impl FnOnce() -> Option<std::rc::Rc<str>>) -> bool {
        if self.seat_uids.contains(&uid) {
            return true;
        }
        !self.console_names.is_empty() && name().is_some_and(|n| self.console_names.contains(&*n))
    }
}

/// An inotify watch on the console directories (and on their parents, so
/// a directory created later is picked up).
#[derive(Debug)]
pub struct ConsoleWatch {
    inotify: Inotify,
    dirs: Vec<PathBuf>,
    watches: Vec<WatchDescriptor>,
}

impl ConsoleWatch {
    /// Watches `users` and `console` (None if inotify is unavailable).
    pub fn new(users: &Path, console: &Path) -> Option<ConsoleWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let mut w = ConsoleWatch {
            inotify,
            dirs: vec![users.to_path_buf(), console.to_path_buf()],
            watches: Vec::new(),
        };
        w.rewatch();
        Some(w)
    }

    /// Watches the standard directories.
    pub fn standard() -> Option<ConsoleWatch> {
        ConsoleWatch::new(Path::new(SYSTEMD_USERS), Path::new(CONSOLE_DIR))
    }

    /// The fd to poll for readability.
    pub fn raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    /// (Re)adds the watches: each directory if it exists, and its nearest
    /// existing parent for directories that do not exist yet.
    fn rewatch(&mut self) {
        for wd in self.watches.drain(..) {
            let _ = self.inotify.rm_watch(wd);
        }
        let content = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        let parent_flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_ONLYDIR;
        for d in self.dirs.clone() {
            if let Ok(wd) = self.inotify.add_watch(d.as_path(), content) {
                self.watches.push(wd);
                continue;
            }
            let mut p = d.parent();
            while let Some(parent) = p {
                if let Ok(wd) = self.inotify.add_watch(parent, parent_flags) {
                    self.watches.push(wd);
                    break;
                }
                p = parent.parent();
            }
        }
    }

    /// Drains pending events; true if anything may have changed (then the
    /// caller rescans). Watches are re-established, as a directory may have
    /// appeared or gone.
    pub fn drain(&mut self) -> bool {
        let mut changed = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            changed = true;
        }
        if changed {
            self.rewatch();
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "busbar-console-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn seats_and_console_names() {
        let d = tempdir("scan");
        let users = d.join("users");
        let console = d.join("console");
        std::fs::create_dir_all(&users).unwrap();
        std::fs::create_dir_all(&console).unwrap();
        std::fs::write(users.join("1000"), "NAME=alice\nSEATS=seat0\n").unwrap();
        std::fs::write(users.join("1001"), "NAME=bob\nSEATS=\n").unwrap();
        std::fs::write(users.join("junk"), "SEATS=seat0\n").unwrap();
        std::fs::write(console.join("carol"), "").unwrap();
        let mut c = Console::default();
        c.rescan(&users, &console);
        assert!(c.at_console(1000, || None));
        assert!(!c.at_console(1001, || Some(Rc::from("bob"))));
        assert!(c.at_console(1002, || Some(Rc::from("carol"))));
        assert!(!c.at_console(1003, || Some(Rc::from("dave"))));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn name_not_asked_for_an_empty_console_dir() {
        let d = tempdir("lazy");
        let mut c = Console::default();
        c.rescan(&d.join("missing"), &d.join("missing2"));
        assert!(!c.at_console(5, || panic!("no lookup needed")));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn watch_sees_a_seat_appear_even_in_a_new_directory() {
        let d = tempdir("watch");
        let users = d.join("systemd").join("users");
        let console = d.join("console");
        let mut w = ConsoleWatch::new(&users, &console).expect("inotify");
        assert!(!w.drain());
        std::fs::create_dir_all(&users).unwrap();
        assert!(w.drain(), "creating the directory is seen");
        std::fs::write(users.join("1000"), "SEATS=seat0\n").unwrap();
        assert!(w.drain(), "a new user file is seen");
        let mut c = Console::default();
        c.rescan(&users, &console);
        assert!(c.at_console(1000, || None));
        std::fs::remove_file(users.join("1000")).unwrap();
        assert!(w.drain(), "a removed user file is seen");
        c.rescan(&users, &console);
        assert!(!c.at_console(1000, || None));
        let _ = std::fs::remove_dir_all(&d);
    }
}
