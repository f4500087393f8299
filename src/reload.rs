//! ReloadConfig and SIGHUP: load and compile the new configuration first,
//! then swap it in; on failure the running configuration stays.

use crate::broker::bus::Bus;

/// Reloads the configuration. Listen addresses, the user and the pidfile
/// are not changed by a reload (as with dbus-daemon).
pub fn reload(bus: &mut Bus, choice: &crate::cli::ConfigChoice) -> Result<(), String> {
    crate::notify::notify("RELOADING=1");
    let loaded = crate::config::load(choice);
    crate::notify::notify("READY=1");
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            crate::log::warning(&format!("Unable to reload configuration: {e}"));
            return Err(format!("Unable to reload configuration: {e}"));
        }
    };
    let sasl = crate::config::sasl_config(&cfg, bus.guid());
    bus.apply_config(cfg, sasl);
    crate::activation::reload(bus);
    // dbus-daemon rereads its service directories on every reload and
    // announces it, whether or not anything changed.
    bus.emit_activatable_services_changed();
    crate::log::info("Reloaded configuration");
    Ok(())
}
