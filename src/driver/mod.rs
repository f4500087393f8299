//! The bus driver, org.freedesktop.DBus: a table of interfaces and methods
//! (the same one generates Introspect), dispatch with dbus-daemon's checks
//! (canonical path, privileged callers, exact signatures), and the handlers.

pub use crate::broker::{build, errors};
mod info;
mod matches;
pub mod monitor;
mod names;
pub mod peer_iface;
mod props;
pub use props::introspect_xml;
pub mod stats;

use crate::broker::bus::{Bus, DBUS_NAME, DBUS_PATH};
use crate::broker::peer::Inbound;
use crate::broker::security::Denied;
use crate::wire::header::{msg_type, Header};
use crate::wire::marshal::Reader;

/// A method call being handled.
pub struct Call<'a> {
    /// The caller.
    pub sid: u64,
    /// The message.
    pub inb: &'a Inbound,
}

impl<'a> Call<'a> {
    /// Header.
    pub fn h(&self) -> &'a Header {
        self.inb.header()
    }
    /// A reader over the body.
    pub fn args(&self) -> Reader<'a> {
        Reader::new(self.inb.body(), self.inb.header().endian())
    }
    /// Member name.
    pub fn member(&self) -> &'a str {
        self.inb.view().member().unwrap_or("")
    }
    /// Object path.
    pub fn path(&self) -> &'a str {
        self.inb.view().path().unwrap_or("")
    }
}

/// A method's successful outcome: the reply body, or nothing when the
/// handler already sent its reply.
pub enum Reply {
    /// Send a method return with this signature and body.
    Body(&'static str, Vec<u8>),
    /// The handler replied itself.
    Sent,
}

type Handler = fn(&mut Bus, &Call<'_>) -> Result<Reply, Denied>;

/// Method may be called on any object path.
const ANY_PATH: u8 = 1;
/// Only the bus's own user or root may call it.
const PRIVILEGED: u8 = 2;

/// One method of the driver.
pub struct Method {
    /// Member name.
    pub name: &'static str,
    /// Input signature.
    pub input: &'static str,
    /// Output signature.
    pub output: &'static str,
    flags: u8,
    handler: Handler,
}

/// One interface of the driver.
pub struct Interface {
    /// Interface name.
    pub name: &'static str,
    /// Methods.
    pub methods: &'static [Method],
    /// Properties (name, signature).
    pub properties: &'static [(&'static str, &'static str)],
    /// Extra introspection XML (signals).
    pub extra: &'static str,
    /// Available on every path.
    pub any_path: bool,
    /// Listed in the Interfaces property.
    pub interesting: bool,
}

const fn m(
    name: &'static str,
    input: &'static str,
    output: &'static str,
    flags: u8,
    handler: Handler,
) -> Method {
    Method {
        name,
        input,
        output,
        flags,
        handler,
    }
}

/// Every interface, in dbus-daemon's order.
pub static INTERFACES: &[Interface] = &[
    Interface {
        name: "org.freedesktop.DBus",
        methods: &[
            m("Hello", "", "s", ANY_PATH, names::hello),
            m("RequestName", "su", "u", ANY_PATH, names::request_name),
            m("ReleaseName", "s", "u", ANY_PATH, names::release_name),
            m("StartServiceByName", "su", "u", ANY_PATH, names::start_service_by_name),
            m("UpdateActivationEnvironment", "a{ss}", "", PRIVILEGED, info::update_activation_environment),
            m("NameHasOwner", "s", "b", ANY_PATH, names::name_has_owner),
            m("ListNames", "", "as", ANY_PATH, names::list_names),
            m("ListActivatableNames", "", "as", ANY_PATH, names::list_activatable_names),
            m("AddMatch", "s", "", ANY_PATH, matches::add_match),
            m("RemoveMatch", "s", "", ANY_PATH, matches::remove_match),
            m("GetNameOwner", "s", "s", ANY_PATH, names::get_name_owner),
            m("ListQueuedOwners", "s", "as", ANY_PATH, names::list_queued_owners),
            m("GetConnectionUnixUser", "s", "u", ANY_PATH, info::get_unix_user),
            m("GetConnectionUnixProcessID", "s", "u", ANY_PATH, info::get_unix_pid),
            m("GetAdtAuditSessionData", "s", "ay", ANY_PATH, info::get_adt_audit_session_data),
            m("GetConnectionSELinuxSecurityContext", "s", "ay", ANY_PATH, info::get_selinux_context),
            m("ReloadConfig", "", "", ANY_PATH, info::reload_config),
            m("GetId", "", "s", ANY_PATH, info::get_id),
            m("GetConnectionCredentials", "s", "a{sv}", ANY_PATH, info::get_connection_credentials),
        ],
        properties: &[("Features", "as"), ("Interfaces", "as")],
        extra: "    <signal name=\"NameOwnerChanged\">\n      <arg type=\"s\"/>\n      <arg type=\"s\"/>\n      <arg type=\"s\"/>\n    </signal>\n    <signal name=\"NameLost\">\n      <arg type=\"s\"/>\n    </signal>\n    <signal name=\"NameAcquired\">\n      <arg type=\"s\"/>\n    </signal>\n    <signal name=\"ActivatableServicesChanged\">\n    </signal>\n",
        any_path: true,
        interesting: false,
    },
    Interface {
        name: "org.freedesktop.DBus.Properties",
        methods: &[
            m("Get", "ss", "v", 0, props::get),
            m("GetAll", "s", "a{sv}", 0, props::get_all),
            m("Set", "ssv", "", 0, props::set),
        ],
        properties: &[],
        extra: "    <signal name=\"PropertiesChanged\">\n      <arg type=\"s\" name=\"interface_name\"/>\n      <arg type=\"a{sv}\" name=\"changed_properties\"/>\n      <arg type=\"as\" name=\"invalidated_properties\"/>\n    </signal>\n",
        any_path: false,
        interesting: false,
    },
    Interface {
        name: "org.freedesktop.DBus.Introspectable",
        methods: &[m("Introspect", "", "s", ANY_PATH, props::introspect)],
        properties: &[],
        extra: "",
        any_path: true,
        interesting: false,
    },
    Interface {
        name: "org.freedesktop.DBus.Monitoring",
        methods: &[m("BecomeMonitor", "asu", "", PRIVILEGED, monitor::become_monitor)],
        properties: &[],
        extra: "",
        any_path: false,
        interesting: true,
    },
    Interface {
        name: "org.freedesktop.DBus.Debug.Stats",
        methods: &[
            m("GetStats", "", "a{sv}", 0, stats::get_stats),
            m("GetConnectionStats", "s", "a{sv}", 0, stats::get_connection_stats),
            m("GetAllMatchRules", "", "a{sas}", 0, stats::get_all_match_rules),
        ],
        properties: &[],
        extra: "",
        any_path: false,
        interesting: true,
    },
    Interface {
        name: "org.freedesktop.DBus.Peer",
        methods: &[
            m("GetMachineId", "", "s", ANY_PATH, peer_iface::get_machine_id),
            m("Ping", "", "", ANY_PATH, peer_iface::ping),
        ],
        properties: &[],
        extra: "",
        any_path: true,
        interesting: false,
    },
    // busbar's own (not in dbus-daemon): re-exec in place (src/reexec.rs).
    Interface {
        name: "org.busbar.Daemon1",
        methods: &[m("Reexec", "", "", PRIVILEGED, reexec)],
        properties: &[],
        extra: "",
        any_path: false,
        interesting: false,
    },
];

/// org.busbar.Daemon1.Reexec: the daemon decides, and answers (once the
/// new image runs, or with Failed when it refuses).
fn reexec(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    bus.upcalls().reexec(bus, c.sid, c.h().serial);
    Ok(Reply::Sent)
}

/// Sends an empty method return to the caller of `c` even when it set
/// NO_REPLY_EXPECTED (dbus-daemon's ReloadConfig does so).
pub fn reply_always(bus: &mut Bus, c: &Call<'_>) {
    let dest = bus.unique_name(c.sid);
    let serial = bus.next_serial();
    let bytes = build::method_return(serial, c.h().serial, dest.as_deref(), "", &[]);
    bus.send_from_driver(c.sid, bytes);
}

/// Sends a method return to the caller of `c`.
///
/// NO_REPLY_EXPECTED suppresses only replies with no arguments (AddMatch,
/// RemoveMatch, Ping, ReloadConfig, ...). That is dbus-daemon 1.14: its
/// driver checks the flag only where it acknowledges a call with an empty
/// return, and answers every method that returns a value (and every error)
/// regardless. The specification allows either ("the reply may be
/// omitted"); clients that set the flag discard what comes back.
pub fn reply(bus: &mut Bus, c: &Call<'_>, sig: &str, body: &[u8]) {
    if c.h().no_reply_expected() && sig.is_empty() {
        return;
    }
    let dest = bus.unique_name(c.sid);
    let serial = bus.next_serial();
    let bytes = build::method_return(serial, c.h().serial, dest.as_deref(), sig, body);
    bus.send_from_driver(c.sid, bytes);
}

fn denied(name: &'static str, text: impl Into<String>) -> Denied {
    Denied {
        name,
        text: text.into(),
    }
}

pub(crate) fn check_privileged(bus: &Bus, c: &Call<'_>) -> Result<(), Denied> {
    let p = bus.peer(c.sid);
    let uid = p.and_then(|p| p.auth_uid.or(p.creds.uid));
    let name = p.map(|p| p.name().to_string()).unwrap_or_default();
    let info = p.map(|p| p.loginfo().to_string()).unwrap_or_default();
    match uid {
        None => Err(denied(
            errors::ACCESS_DENIED,
            format!(
                "rejected attempt to call {} by connection {name} ({info}) with unknown uid",
                c.member()
            ),
        )),
        Some(u) if u == 0 || u == nix::unistd::geteuid().as_raw() => Ok(()),
        Some(u) => {
            let text = format!(
                "rejected attempt to call {} by connection {name} ({info}) with uid {u}",
                c.member()
            );
            let who = p.map(|p| p.who()).unwrap_or_default();
            crate::log::event(
                crate::log::Kind::PolicyDenied,
                crate::log::Level::Security,
                Some(&who),
                &text,
            );
            Err(denied(errors::ACCESS_DENIED, text))
        }
    }
}

/// Handles a message addressed to org.freedesktop.DBus (policy already
/// checked). Returns false when the bus answered with an error (then, as
/// with dbus-daemon, eavesdroppers do not see the call).
pub fn handle(bus: &mut Bus, sid: u64, inb: &Inbound) -> bool {
    let h = inb.header();
    if h.msg_type == msg_type::SIGNAL {
        let v = inb.view();
        if v.interface() == Some("org.freedesktop.systemd1.Activator")
            && v.member() == Some("ActivationFailure")
        {
            crate::activation::systemd_failure(bus, sid, inb);
        }
        return true;
    }
    if h.msg_type != msg_type::METHOD_CALL {
        return true;
    }
    let c = Call { sid, inb };
    match dispatch(bus, &c) {
        Ok(Reply::Body(sig, body)) => reply(bus, &c, sig, &body),
        Ok(Reply::Sent) => {}
        Err(d) => {
            bus.send_error(sid, h, d.name, &d.text);
            return false;
        }
    }
    true
}

fn dispatch(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let iface = c.inb.view().interface();
    let member = c.member();
    let canonical = c.path() == DBUS_PATH;
    let mut found_interface = false;
    for i in INTERFACES {
        if !(canonical || i.any_path) {
            continue;
        }
        if iface.is_some_and(|n| n != i.name) {
            continue;
        }
        found_interface = true;
        let Some(meth) = i.methods.iter().find(|m| m.name == member) else {
            continue;
        };
        if meth.flags & PRIVILEGED != 0 {
            check_privileged(bus, c)?;
        }
        if !(canonical || meth.flags & ANY_PATH != 0) {
            return Err(denied(
                errors::ACCESS_DENIED,
                format!("Method '{member}' is only available at the canonical object path '{DBUS_PATH}'"),
            ));
        }
        let sig = c.inb.view().signature().unwrap_or("");
        if sig != meth.input {
            return Err(denied(
                errors::INVALID_ARGS,
                format!(
                    "Call to {member} has wrong args ({sig}, expected {})\n",
                    meth.input
                ),
            ));
        }
        if member != "Hello" && !bus.peer(c.sid).is_some_and(|p| p.is_active()) {
            return Err(denied(
                errors::ACCESS_DENIED,
                "Client tried to send a message other than Hello without being registered",
            ));
        }
        return (meth.handler)(bus, c);
    }
    Err(denied(
        if found_interface {
            errors::UNKNOWN_METHOD
        } else {
            errors::UNKNOWN_INTERFACE
        },
        format!("{DBUS_NAME} does not understand message {member}"),
    ))
}

/// A malformed argument list (the signature matched, so this means the
/// body is inconsistent, which validation should already have caught).
fn bad_args(_: crate::wire::WireError) -> Denied {
    denied(errors::INVALID_ARGS, "Invalid arguments")
}
