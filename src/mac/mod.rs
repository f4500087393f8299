//! Mandatory access control: SELinux (bus/selinux.c), AppArmor
//! (bus/apparmor.c) and their audit records (bus/audit.c), with
//! dbus-daemon's semantics.
//!
//! The daemon builds one [`Mac`] at start-up. Where no security module
//! mediates D-Bus, [`Mac::active`] is false and the broker's hooks are one
//! test of that bool: no check, no library loaded beyond the probe, no log
//! line. Peers' labels (SO_PEERSEC) are read at accept whatever the state,
//! because GetConnectionCredentials reports them as dbus-daemon does.

pub mod apparmor;
pub mod audit;
mod dl;
pub mod selinux;

use apparmor::Con;
use selinux::Sid;

/// A connection's security labels.
#[derive(Debug, Default)]
pub struct PeerMac {
    /// SO_PEERSEC as the kernel gave it, up to its first NUL
    /// (LinuxSecurityLabel).
    pub label: Option<Box<[u8]>>,
    /// The SELinux SID of the label, when SELinux mediates.
    pub sid: Option<Sid>,
    /// The AppArmor confinement, when AppArmor mediates.
    pub aa: Option<Con>,
}

/// The security modules that mediate this bus.
#[derive(Debug, Default)]
pub struct Mac {
    /// Whether any module mediates (the only thing the hot path reads).
    pub active: bool,
    selinux: Option<selinux::Selinux>,
    apparmor: Option<apparmor::AppArmor>,
}

/// The name of a message type as dbus-daemon prints it.
pub fn type_name(t: u8) -> &'static str {
    use policy::msg_type::*;
    match t {
        METHOD_CALL => "method_call",
        METHOD_RETURN => "method_return",
        ERROR => "error",
        SIGNAL => "signal",
        _ => "invalid",
    }
}

/// Before the configuration is read: tells the policy loader whether
/// SELinux is enabled and where its policy root is (for
/// `if_selinux_enabled` and `selinux_root_relative` includes), as
/// dbus-daemon's bus_selinux_pre_init does before parsing.
pub fn prepare_config_loading() -> Result<(), String> {
    let enabled = selinux::enabled().map_err(|e| {
        crate::log::warning(&e);
        "SELinux pre-initialization failed".to_string()
    })?;
    policy::set_selinux(enabled, selinux::policy_root());
    Ok(())
}

/// Whether [`Mac::start`] would refuse this configuration for what the
/// kernel offers (checked before a re-exec, so that the new image does not
/// fail to start with the connections in its hands).
pub fn check_startable(cfg: &policy::Config) -> Result<(), String> {
    let aa_mode = cfg.apparmor_mode.as_deref().unwrap_or("enabled");
    if aa_mode == "required" && !apparmor::supported() {
        return Err("AppArmor mediation required but not present".into());
    }
    Ok(())
}

/// What a denial carries back to the caller: D-Bus error name and text.
pub type Refusal = (&'static str, String);

impl Mac {
    /// dbus-daemon's audit, SELinux and AppArmor initialisation, after the
    /// bus dropped its privileges. `syslog` says whether the bus logs to
    /// syslog (the "enabled" lines are written only then, as dbus-daemon).
    pub fn start(cfg: &policy::Config, syslog: bool) -> Result<Mac, String> {
        let se = selinux::enabled().unwrap_or(false);
        let aa_supported = apparmor::supported();
        let aa_mode = cfg.apparmor_mode.as_deref().unwrap_or("enabled");
        if !se && !aa_supported {
            if aa_mode == "required" {
                return Err("AppArmor mediation required but not present".into());
            }
            return Ok(Mac::default());
        }
        audit::init();
        let selinux = if se {
            Some(selinux::Selinux::start()?)
        } else {
            None
        };
        let apparmor = match (aa_supported, aa_mode) {
            (true, "disabled") => None,
            (true, _) => Some(apparmor::AppArmor::start()?),
            (false, "required") => return Err("AppArmor mediation required but not present".into()),
            (false, _) => None,
        };
        if selinux.is_some() && syslog {
            crate::log::info("SELinux support is enabled");
        }
        if apparmor.is_some() && syslog {
            crate::log::info("AppArmor D-Bus mediation is enabled");
        }
        Ok(Mac {
            active: selinux.is_some() || apparmor.is_some(),
            selinux,
            apparmor,
        })
    }

    /// Whether SELinux mediates.
    pub fn selinux(&self) -> bool {
        self.selinux.is_some()
    }

    /// Whether AppArmor mediates.
    pub fn apparmor(&self) -> bool {
        self.apparmor.is_some()
    }

    /// The AVC's netlink socket, for the loop to watch.
    pub fn netlink_fd(&self) -> Option<std::os::fd::RawFd> {
        self.selinux.as_ref().map(|s| s.netlink_fd())
    }

    /// The netlink socket is readable.
    pub fn netlink_ready(&self) {
        if let Some(s) = &self.selinux {
            s.netlink_ready();
        }
    }

    /// The labels of a new connection, from its SO_PEERSEC `label`; an
    /// error (the connection is dropped) where a mediating module cannot
    /// label it, as dbus-daemon's connection set-up.
    pub fn peer(&self, label: Option<Vec<u8>>) -> Result<Option<Box<PeerMac>>, String> {
        if label.is_none() && !self.active {
            return Ok(None);
        }
        let mut p = PeerMac {
            label: label.map(Vec::into_boxed_slice),
            ..PeerMac::default()
        };
        if let Some(se) = &self.selinux {
            let Some(l) = &p.label else {
                return Err("Failed to read an SELinux context from connection".into());
            };
            match se.sid_of(l) {
                Ok(sid) => p.sid = Some(sid),
                Err(e) => {
                    crate::log::warning(&e);
                    return Err(e);
                }
            }
        }
        if self.apparmor.is_some() {
            let Some(l) = &p.label else {
                return Err(
                    "Failed to get AppArmor confinement information of socket peer: No such file or directory"
                        .into(),
                );
            };
            p.aa = Some(Con::split(&String::from_utf8_lossy(l)));
        }
        Ok(Some(Box::new(p)))
    }

    /// The SELinux context of a peer, or of the bus itself (`peer` None),
    /// for GetConnectionSELinuxSecurityContext; None where SELinux does
    /// not mediate.
    pub fn selinux_context(&self, peer: Option<Option<&PeerMac>>) -> Option<Vec<u8>> {
        let se = self.selinux.as_ref()?;
        let sid = match peer {
            None => se.bus_sid(),
            Some(p) => p?.sid?,
        };
        se.context_of(sid).ok()
    }

    /// acquire_svc and bind (RequestName): dbus-daemon's SELinux check,
    /// then its AppArmor check. `context` is the name's `<associate>`d
    /// context, if any; `who` the connection's name or "(inactive)".
    pub fn allows_acquire(
        &self,
        peer: Option<&PeerMac>,
        pid: Option<u32>,
        name: &str,
        context: Option<&str>,
        bustype: Option<&str>,
        who: &str,
    ) -> Result<(), Refusal> {
        if let Some(se) = &self.selinux {
            let target = context.and_then(|c| match se.sid_of(c.as_bytes()) {
                Ok(s) => Some(s),
                Err(e) => {
                    crate::log::warning(&e);
                    None
                }
            });
            let mut aux = format!("service={name}");
            if let Some(pid) = pid {
                aux.push_str(&format!(" spid={pid}"));
            }
            let ok = match peer.and_then(|p| p.sid) {
                Some(ssid) => se.check(ssid, target, c"acquire_svc", &aux),
                None => false,
            };
            if !ok {
                return Err((
                    "org.freedesktop.DBus.Error.AccessDenied",
                    format!("Connection \"{who}\" is not allowed to own the service \"{name}\" due to SELinux policy"),
                ));
            }
        }
        if let Some(aa) = &self.apparmor {
            let mut log = Vec::new();
            let party = apparmor::Party {
                con: peer.and_then(|p| p.aa.as_ref()),
                pid,
            };
            let r = apparmor::allows_bind(&aa.kernel, party, bustype, name, who, &mut log);
            write_records(log);
            r?;
        }
        Ok(())
    }

    /// send_msg (SELinux): whether `sender` may send `m` to `recipient`
    /// (None: the bus driver). Activation is not mediated, as in
    /// dbus-daemon.
    pub fn selinux_allows_send(&self, s: &SendFacts<'_>) -> bool {
        let Some(se) = &self.selinux else { return true };
        if s.activation {
            return true;
        }
        let mut aux = format!("msgtype={}", type_name(s.msg.msg_type));
        for (k, v) in [
            ("interface", s.msg.interface),
            ("member", s.msg.member),
            ("error_name", s.msg.error_name),
            ("dest", Some(s.destination)),
        ] {
            if let Some(v) = v {
                aux.push_str(&format!(" {k}={v}"));
            }
        }
        if let Some(pid) = s.sender_pid {
            aux.push_str(&format!(" spid={pid}"));
        }
        if let Some(pid) = s.recipient.and_then(|r| r.1) {
            aux.push_str(&format!(" tpid={pid}"));
        }
        let Some(ssid) = s.sender.and_then(|p| p.sid) else {
            return false;
        };
        let tsid = match s.recipient {
            None => None,
            Some((p, _)) => match p.and_then(|p| p.sid) {
                Some(t) => Some(t),
                None => return false,
            },
        };
        se.check(ssid, tsid, c"send_msg", &aux)
    }

    /// send and receive (AppArmor), after [`Mac::selinux_allows_send`].
    pub fn apparmor_allows_send(
        &self,
        s: &SendFacts<'_>,
        refusal_text: &dyn Fn() -> String,
    ) -> Result<(), Refusal> {
        let Some(aa) = &self.apparmor else {
            return Ok(());
        };
        let send = apparmor::Send {
            src: apparmor::Party {
                con: s.sender.and_then(|p| p.aa.as_ref()),
                pid: s.sender_pid,
            },
            dst: s.recipient.map(|(p, pid)| apparmor::Party {
                con: p.and_then(|p| p.aa.as_ref()),
                pid,
            }),
            bus: &aa.bus_con,
            activation: s.activation,
            requested_reply: s.requested_reply,
            bustype: s.bustype,
            msg: s.msg,
            destination: s.destination,
            source: s.source,
            refusal_text,
        };
        let mut log = Vec::new();
        let r = apparmor::allows_send(&aa.kernel, &send, &mut log);
        write_records(log);
        r
    }

    /// eavesdrop (AppArmor): eavesdropping match rules and BecomeMonitor.
    pub fn allows_eavesdrop(
        &self,
        peer: Option<&PeerMac>,
        pid: Option<u32>,
        bustype: Option<&str>,
        who: &str,
    ) -> Result<(), Refusal> {
        let Some(aa) = &self.apparmor else {
            return Ok(());
        };
        let mut log = Vec::new();
        let party = apparmor::Party {
            con: peer.and_then(|p| p.aa.as_ref()),
            pid,
        };
        let r = apparmor::allows_eavesdrop(&aa.kernel, party, bustype, who, &mut log);
        write_records(log);
        r
    }
}

fn write_records(log: Vec<apparmor::Record>) {
    for (allow, op, fields) in log {
        audit::apparmor_message(allow, &op, &fields);
    }
}

/// The facts of one delivery the send checks look at.
#[derive(Clone, Copy, Debug)]
pub struct SendFacts<'a> {
    /// The sender's labels.
    pub sender: Option<&'a PeerMac>,
    /// The sender's pid.
    pub sender_pid: Option<u32>,
    /// The recipient's labels and pid; None: the bus driver.
    pub recipient: Option<(Option<&'a PeerMac>, Option<u32>)>,
    /// The recipient is being activated.
    pub activation: bool,
    /// A reply the recipient asked for.
    pub requested_reply: bool,
    /// `<type>` of the bus.
    pub bustype: Option<&'a str>,
    /// The message.
    pub msg: apparmor::Msg<'a>,
    /// DESTINATION, or org.freedesktop.DBus.
    pub destination: &'a str,
    /// The sender's unique name, or org.freedesktop.DBus.
    pub source: &'a str,
}
