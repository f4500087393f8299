//! Choosing and loading the configuration: `--session`/`--system` use the
//! installed file when there is one and the copy embedded in the `policy`
//! crate otherwise, so a bus runs on a machine without dbus installed.

use std::path::{Path, PathBuf};

use policy::Config;

use crate::cli::ConfigChoice;
use crate::transport::sasl::{mechanism_from_name, Mechanism, SaslConfig};

/// Where dbus-daemon's session configuration lives.
pub const SESSION_CONF: &str = "/usr/share/dbus-1/session.conf";
/// Where dbus-daemon's system configuration lives.
pub const SYSTEM_CONF: &str = "/usr/share/dbus-1/system.conf";

/// Loads the configuration the command line chose.
pub fn load(choice: &ConfigChoice) -> Result<Config, String> {
    let (path, embedded) = match choice {
        ConfigChoice::File(p) => return policy::load_file(p).map_err(|e| e.located()),
        ConfigChoice::Session => (SESSION_CONF, policy::SESSION_CONF),
        ConfigChoice::System => (SYSTEM_CONF, policy::SYSTEM_CONF),
    };
    let p = Path::new(path);
    if p.exists() {
        policy::load_file(p).map_err(|e| e.located())
    } else {
        policy::load_str(embedded, &PathBuf::from(path)).map_err(|e| e.located())
    }
}

/// SASL settings from the configuration.
pub fn sasl_config(cfg: &Config, guid: &str) -> SaslConfig {
    let mut mechanisms: Vec<Mechanism> = cfg
        .auth
        .iter()
        .filter_map(|m| mechanism_from_name(m))
        .collect();
    if mechanisms.is_empty() {
        mechanisms = vec![
            Mechanism::External,
            Mechanism::CookieSha1,
            Mechanism::Anonymous,
        ];
    }
    SaslConfig {
        mechanisms,
        allow_anonymous: cfg.allow_anonymous,
        guid: guid.to_string(),
        unix_fd_possible: true,
    }
}
