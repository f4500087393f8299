//! Watching service directories with inotify, as dbus-daemon does, so a
//! .service file that is written, moved in or out, or deleted is seen
//! without a reload. Directories that do not exist cannot be watched; for those the
//! index's modification-time check on lookup still applies.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// An inotify instance watching a set of directories.
#[derive(Debug)]
pub struct DirWatch {
    inotify: Inotify,
    watches: Vec<(PathBuf, WatchDescriptor)>,
}

impl DirWatch {
    /// A watcher with no directories yet (None if inotify is unavailable).
    pub fn new() -> Option<DirWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        Some(DirWatch {
            inotify,
            watches: Vec::new(),
        })
    }

    /// The fd to poll for readability.
    pub fn raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    /// Watches exactly `dirs` (adding and removing watches as needed).
    pub fn set_dirs(&mut self, dirs: &[PathBuf]) {
        let (keep, drop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.watches)
            .into_iter()
            .partition(|(d, _)| dirs.contains(d));
        for (_, wd) in drop {
            let _ = self.inotify.rm_watch(wd);
        }
        self.watches = keep;
        // dbus-daemon's mask (bus/dir-watch-inotify.c): a file counts once
        // it is closed after writing, moved in or out, or deleted. Creation
        // and each write are not events, so a file still being written is
        // never read half-done (which would log `No "Name" key` and the
        // like for a file that is fine once complete).
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM;
        for d in dirs {
            if self.watches.iter().any(|(w, _)| w == d) {
                continue;
            }
            if let Ok(wd) = self.inotify.add_watch(d.as_path(), flags) {
                self.watches.push((d.clone(), wd));
            }
        }
    }

    /// Drains pending events; true if anything changed.
    pub fn drain(&self) -> bool {
        let mut changed = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            changed = true;
        }
        changed
    }
}
