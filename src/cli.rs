//! The dbus-daemon command line, parsed exactly as bus/main.c does (same
//! options, same order of precedence, same errors), into [`Options`].

use std::path::PathBuf;

/// Where the configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChoice {
    /// `--session`
    Session,
    /// `--system`
    System,
    /// `--config-file=FILE`
    File(PathBuf),
}

/// Tri-state overrides of the configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Override {
    /// Do what the configuration says.
    #[default]
    Config,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Resolved command-line settings.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The configuration to load.
    pub config: Option<ConfigChoice>,
    /// `--address`
    pub address: Option<String>,
    /// `--print-address[=FD]`: Some(fd), 1 for stdout.
    pub print_address: Option<i32>,
    /// `--print-pid[=FD]`
    pub print_pid: Option<i32>,
    /// `--fork` / `--nofork`
    pub fork: Override,
    /// `--syslog` / `--nosyslog`
    pub syslog: Override,
    /// `--syslog-only`
    pub syslog_only: bool,
    /// `--nopidfile` clears this.
    pub write_pidfile: bool,
    /// `--systemd-activation`
    pub systemd_activation: bool,
    /// `--check-config FILE` (busbar's own): validate and exit.
    pub check_config: Option<PathBuf>,
    /// The hidden `--restore-state=FD` a re-executing busbar passes to its
    /// new image: the fd of the saved state (not in --help).
    pub restore_state: Option<i32>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// Run the bus.
    Run(Options),
    /// Print this text to stdout and exit 0.
    Print(String),
    /// Print this text to stderr and exit 1.
    Fail(String),
}

/// The hidden option that hands the saved state to a re-executed busbar.
pub const RESTORE_STATE: &str = "--restore-state=";

/// The usage line dbus-daemon prints.
pub const USAGE: &str = "busbar [--version] [--session] [--system] [--config-file=FILE] [--print-address[=DESCRIPTOR]] [--print-pid[=DESCRIPTOR]] [--introspect] [--address=ADDRESS] [--nopidfile] [--nosyslog] [--syslog] [--syslog-only] [--nofork] [--fork] [--systemd-activation] [--check-config=FILE] [--print-state-version]\n";

fn version_text() -> String {
    format!(
        "D-Bus Message Bus Daemon 1.14.10\nbusbar {}, a dbus-daemon compatible message bus\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn parse_fd(s: &str) -> Result<i32, String> {
    let v: Option<i64> = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    };
    match v {
        Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => Ok(v as i32),
        _ => Err(format!("Invalid file descriptor: \"{s}\"\n")),
    }
}

/// Parses argv (without the program name).
pub fn parse(args: &[String]) -> Action {
    let mut o = Options {
        write_pidfile: true,
        ..Options::default()
    };
    let mut addr_fd: Option<String> = None;
    let mut pid_fd: Option<String> = None;
    let mut prev: Option<&str> = None;
    let set_config = |o: &mut Options, c: ConfigChoice, what: &str| -> Result<(), String> {
        if o.config.is_some() {
            return Err(format!(
                "--{what} specified but configuration file already requested\n"
            ));
        }
        o.config = Some(c);
        Ok(())
    };
    for arg in args {
        let arg = arg.as_str();
        let r: Result<(), String> = match arg {
            "--help" | "-h" | "-?" => return Action::Fail(USAGE.into()),
            "--version" => return Action::Print(version_text()),
            "--print-state-version" => {
                return Action::Print(format!(
                    "{}.{}\n",
                    crate::statefile::MAJOR,
                    crate::statefile::MINOR
                ))
            }
            _ if arg.starts_with(RESTORE_STATE) => match arg[RESTORE_STATE.len()..].parse() {
                Ok(fd) => {
                    o.restore_state = Some(fd);
                    Ok(())
                }
                Err(_) => Err(format!("Invalid state descriptor in {arg}\n")),
            },
            "--introspect" => {
                return Action::Print(crate::driver::introspect_xml(crate::broker::bus::DBUS_PATH))
            }
            "--nosyslog" => {
                o.syslog = Override::Never;
                o.syslog_only = false;
                Ok(())
            }
            "--syslog" => {
                o.syslog = Override::Always;
                Ok(())
            }
            "--syslog-only" => {
                o.syslog = Override::Always;
                o.syslog_only = true;
                Ok(())
            }
            "--nofork" => {
                o.fork = Override::Never;
                Ok(())
            }
            "--fork" => {
                o.fork = Override::Always;
                Ok(())
            }
            "--systemd-activation" => {
                o.systemd_activation = true;
                Ok(())
            }
            "--nopidfile" => {
                o.write_pidfile = false;
                Ok(())
            }
            "--system" => set_config(&mut o, ConfigChoice::System, "system"),
            "--session" => set_config(&mut o, ConfigChoice::Session, "session"),
            _ if arg.starts_with("--config-file=") => set_config(
                &mut o,
                ConfigChoice::File(PathBuf::from(&arg["--config-file=".len()..])),
                "config-file",
            ),
            _ if prev == Some("--config-file") => set_config(
                &mut o,
                ConfigChoice::File(PathBuf::from(arg)),
                "config-file",
            ),
            "--config-file" | "--address" | "--check-config" => Ok(()),
            _ if arg.starts_with("--check-config=") => {
                o.check_config = Some(PathBuf::from(&arg["--check-config=".len()..]));
                Ok(())
            }
            _ if prev == Some("--check-config") => {
                o.check_config = Some(PathBuf::from(arg));
                Ok(())
            }
            _ if arg.starts_with("--address=") => {
                if o.address.is_some() {
                    Err("--address specified but address already requested\n".into())
                } else {
                    o.address = Some(arg["--address=".len()..].to_string());
                    Ok(())
                }
            }
            _ if prev == Some("--address") => {
                if o.address.is_some() {
                    Err("--address specified but address already requested\n".into())
                } else {
                    o.address = Some(arg.to_string());
                    Ok(())
                }
            }
            _ if arg.starts_with("--print-address=") => {
                o.print_address = Some(1);
                if addr_fd.is_some() {
                    Err("--print-address specified but printing address to another descriptor already requested\n".into())
                } else {
                    addr_fd = Some(arg["--print-address=".len()..].to_string());
                    Ok(())
                }
            }
            _ if prev == Some("--print-address") => {
                o.print_address = Some(1);
                if addr_fd.is_some() {
                    Err("--print-address specified but printing address to another descriptor already requested\n".into())
                } else {
                    addr_fd = Some(arg.to_string());
                    Ok(())
                }
            }
            "--print-address" => {
                o.print_address = Some(1);
                Ok(())
            }
            _ if arg.starts_with("--print-pid=") => {
                o.print_pid = Some(1);
                if pid_fd.is_some() {
                    Err("--print-pid specified but printing pid to another descriptor already requested\n".into())
                } else {
                    pid_fd = Some(arg["--print-pid=".len()..].to_string());
                    Ok(())
                }
            }
            _ if prev == Some("--print-pid") => {
                o.print_pid = Some(1);
                if pid_fd.is_some() {
                    Err("--print-pid specified but printing pid to another descriptor already requested\n".into())
                } else {
                    pid_fd = Some(arg.to_string());
                    Ok(())
                }
            }
            "--print-pid" => {
                o.print_pid = Some(1);
                Ok(())
            }
            _ => return Action::Fail(USAGE.into()),
        };
        if let Err(e) = r {
            return Action::Fail(e);
        }
        prev = Some(arg);
    }
    if o.check_config.is_some() {
        return Action::Run(o);
    }
    if o.config.is_none() {
        return Action::Fail(format!("No configuration file specified.\n{USAGE}"));
    }
    if let Some(fd) = addr_fd.filter(|s| !s.is_empty()) {
        match parse_fd(&fd) {
            Ok(v) => o.print_address = Some(v),
            Err(e) => return Action::Fail(e),
        }
    }
    if let Some(fd) = pid_fd.filter(|s| !s.is_empty()) {
        match parse_fd(&fd) {
            Ok(v) => o.print_pid = Some(v),
            Err(e) => return Action::Fail(e),
        }
    }
    Action::Run(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &[&str]) -> Options {
        let v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        match parse(&v) {
            Action::Run(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dbus_daemon_forms() {
        let o = run(&[
            "--config-file=/x",
            "--nofork",
            "--print-address=1",
            "--address=unix:tmpdir=/tmp",
            "--systemd-activation",
        ]);
        assert_eq!(o.config, Some(ConfigChoice::File("/x".into())));
        assert_eq!(o.print_address, Some(1));
        assert!(o.systemd_activation);
        let o = run(&["--nofork", "--print-address", "4", "--session"]);
        assert_eq!(o.print_address, Some(4));
        assert_eq!(o.config, Some(ConfigChoice::Session));
        let o = run(&["--print-address", "--session", "--print-pid"]);
        assert_eq!(o.print_address, Some(1));
        assert_eq!(o.print_pid, Some(1));
        let o = run(&["--config-file", "/y", "--fork", "--print-pid=9"]);
        assert_eq!(o.config, Some(ConfigChoice::File("/y".into())));
        assert_eq!(o.print_pid, Some(9));
        assert_eq!(o.fork, Override::Always);
    }

    #[test]
    fn errors() {
        let v = |a: &[&str]| parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(matches!(v(&["--bogus"]), Action::Fail(_)));
        assert!(matches!(v(&["--nofork"]), Action::Fail(_)));
        assert!(matches!(v(&["--session", "--system"]), Action::Fail(_)));
        assert!(
            matches!(v(&["--session", "--print-address=abc"]), Action::Fail(e) if e.contains("Invalid file descriptor: \"abc\""))
        );
        assert!(matches!(v(&["--version"]), Action::Print(_)));
    }
}
