//! The environment a configuration is loaded in: XDG directories, user and
//! group names, SELinux. Injectable through [`LoadOptions`] for tests and for
//! a daemon that resolves names through NSS itself.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A name → id resolver (for users or groups).
pub type NameResolver = Box<dyn Fn(&str) -> Option<u32> + Send + Sync>;

/// Everything outside the configuration files that loading depends on.
pub struct LoadOptions {
    /// $XDG_RUNTIME_DIR
    pub xdg_runtime_dir: Option<PathBuf>,
    /// $XDG_DATA_HOME
    pub xdg_data_home: Option<PathBuf>,
    /// $XDG_DATA_DIRS (colon separated)
    pub xdg_data_dirs: Option<String>,
    /// The home directory of the user running the bus.
    pub home: Option<PathBuf>,
    /// Whether SELinux is enabled (`<include if_selinux_enabled="yes">`).
    pub selinux_enabled: bool,
    /// libselinux's policy root (`<include selinux_root_relative="yes">`);
    /// None: such an include fails, as in a dbus-daemon without it.
    pub selinux_policy_root: Option<PathBuf>,
    /// User name → uid (numbers are accepted before this is asked).
    pub user_id: NameResolver,
    /// Group name → gid (numbers are accepted before this is asked).
    pub group_id: NameResolver,
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("xdg_runtime_dir", &self.xdg_runtime_dir)
            .field("xdg_data_home", &self.xdg_data_home)
            .field("xdg_data_dirs", &self.xdg_data_dirs)
            .field("home", &self.home)
            .field("selinux_enabled", &self.selinux_enabled)
            .field("selinux_policy_root", &self.selinux_policy_root)
            .finish_non_exhaustive()
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::from_env()
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from)
}

/// The SELinux state the daemon found (see [`set_selinux`]).
static SELINUX: std::sync::OnceLock<(bool, Option<PathBuf>)> = std::sync::OnceLock::new();

/// Records, once per process, whether SELinux is enabled and libselinux's
/// policy root, for every later [`LoadOptions::from_env`] (the daemon asks
/// libselinux; this crate stays free of it).
pub fn set_selinux(enabled: bool, policy_root: Option<PathBuf>) {
    let _ = SELINUX.set((enabled, policy_root));
}

impl LoadOptions {
    /// Options from the process environment, /etc/passwd and /etc/group;
    /// SELinux as [`set_selinux`] recorded it (disabled if it never ran).
    pub fn from_env() -> Self {
        let home = process_uid()
            .and_then(|uid| passwd_field_by_uid(uid, 5))
            .map(PathBuf::from)
            .or_else(|| env_path("HOME"));
        LoadOptions {
            xdg_runtime_dir: env_path("XDG_RUNTIME_DIR"),
            xdg_data_home: env_path("XDG_DATA_HOME"),
            xdg_data_dirs: std::env::var("XDG_DATA_DIRS").ok(),
            home,
            selinux_enabled: SELINUX.get().is_some_and(|s| s.0),
            selinux_policy_root: SELINUX.get().and_then(|s| s.1.clone()),
            user_id: Box::new(|n| db_lookup("/etc/passwd", n)),
            group_id: Box::new(|n| db_lookup("/etc/group", n)),
        }
    }

    /// The standard session service directories, in dbus-daemon's order
    /// (without the transient directory).
    pub fn standard_session_servicedirs(&self) -> Vec<PathBuf> {
        let mut search = String::new();
        match (&self.xdg_data_home, &self.home) {
            (Some(d), _) => search.push_str(&d.to_string_lossy()),
            (None, Some(h)) => search.push_str(&h.join(".local/share").to_string_lossy()),
            (None, None) => {}
        }
        search.push(':');
        match &self.xdg_data_dirs {
            Some(d) => {
                search.push_str(d);
                search.push(':');
            }
            None => search.push_str("/usr/local/share:/usr/share:"),
        }
        search.push_str("/usr/share");
        split_paths(&search, "dbus-1/services")
    }

    /// The transient session service directory ($XDG_RUNTIME_DIR/dbus-1/services).
    pub fn transient_servicedir(&self) -> Option<PathBuf> {
        self.xdg_runtime_dir
            .as_ref()
            .map(|d| d.join("dbus-1/services"))
    }
}

/// The standard system service directories.
pub fn standard_system_servicedirs() -> Vec<PathBuf> {
    split_paths(
        "/usr/local/share:/usr/share:/usr/share:/lib",
        "dbus-1/system-services",
    )
}

fn split_paths(search: &str, suffix: &str) -> Vec<PathBuf> {
    search
        .split(':')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Path::new(p).join(suffix))
        .collect()
}

/// The uid this process runs as (the owner of /proc/self).
pub fn process_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// A number as dbus accepts it for a user or group: the whole string parses.
pub(crate) fn numeric_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Looks `name` up in a passwd/group style file (id in the third field).
fn db_lookup(file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != name {
            return None;
        }
        f.nth(1)?.parse().ok()
    })
}

fn passwd_field_by_uid(uid: u32, field: usize) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f.get(field).map(|s| (*s).to_owned()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_dirs() {
        let o = LoadOptions {
            xdg_runtime_dir: Some("/run/user/1".into()),
            xdg_data_home: None,
            xdg_data_dirs: None,
            home: Some("/home/u".into()),
            selinux_enabled: false,
            selinux_policy_root: None,
            user_id: Box::new(|_| None),
            group_id: Box::new(|_| None),
        };
        let d = o.standard_session_servicedirs();
        let want: Vec<PathBuf> = [
            "/home/u/.local/share/dbus-1/services",
            "/usr/local/share/dbus-1/services",
            "/usr/share/dbus-1/services",
            "/usr/share/dbus-1/services",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(d, want);
        assert_eq!(
            o.transient_servicedir(),
            Some(PathBuf::from("/run/user/1/dbus-1/services"))
        );
        assert_eq!(standard_system_servicedirs().len(), 4);
        assert_eq!(numeric_id("0"), Some(0));
        assert_eq!(numeric_id("root"), None);
        assert_eq!(db_lookup("/etc/passwd", "root"), Some(0));
    }
}
