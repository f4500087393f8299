//! The broker's side of mandatory access control (src/mac): the facts of
//! a delivery, a name request or an eavesdropper, handed to [`crate::mac`]
//! and its refusals turned into errors. Each hook is called only when
//! `bus.mac().active`.

use super::bus::{Bus, DBUS_NAME};
use super::errors;
use super::security::{type_name, Denied, View};

impl Bus {
    /// The security modules' state.
    pub fn mac(&self) -> &crate::mac::Mac {
        &self.mac
    }

    /// The security modules' state, to feed it (AVC netlink events).
    pub fn mac_mut(&mut self) -> &mut crate::mac::Mac {
        &mut self.mac
    }

    /// Installs the security modules started for this configuration.
    pub fn set_mac(&mut self, mac: crate::mac::Mac) {
        self.mac = mac;
    }

    fn mac_party(&self, id: u64) -> (Option<&crate::mac::PeerMac>, Option<u32>) {
        match self.peers.get(&id) {
            Some(p) => (p.mac.as_deref(), p.creds.pid),
            None => (None, None),
        }
    }

    fn mac_who(&self, id: u64) -> String {
        match self.peers.get(&id) {
            Some(p) if p.is_active() => p.name().to_string(),
            _ => "(inactive)".to_string(),
        }
    }

    /// SELinux send_msg, then AppArmor send/receive, for `v` from
    /// `sender` to `proposed` (None: the driver), before the XML policy
    /// (dbus-daemon's bus_context_check_security_policy order).
    pub(super) fn mac_send(
        &self,
        sender: u64,
        proposed: Option<u64>,
        v: &View<'_>,
        requested_reply: bool,
        activation: bool,
    ) -> Result<(), Denied> {
        let f = v.facts();
        let (smac, spid) = self.mac_party(sender);
        let source = self
            .peers
            .get(&sender)
            .and_then(|p| p.unique_name.as_deref())
            .unwrap_or(DBUS_NAME);
        let facts = crate::mac::SendFacts {
            sender: smac,
            sender_pid: spid,
            recipient: proposed.map(|r| self.mac_party(r)),
            activation,
            requested_reply,
            bustype: self.config.bus_type.as_deref(),
            msg: crate::mac::apparmor::Msg {
                msg_type: f.msg_type,
                path: f.path,
                interface: f.interface,
                member: f.member,
                error_name: f.error_name,
            },
            destination: f.destination.unwrap_or(DBUS_NAME),
            source,
        };
        if !self.mac.selinux_allows_send(&facts) {
            // No log line here: the AVC already wrote its record.
            return Err(self.complaint(
                errors::ACCESS_DENIED,
                "An SELinux policy prevents this sender from sending this message to this recipient",
                0,
                v,
                Some(sender),
                proposed,
                false,
            ));
        }
        let text = || {
            let (sname, sinfo) = match self.peers.get(&sender) {
                Some(p) => (p.name().to_string(), p.loginfo().to_string()),
                None => ("(unset)".to_string(), "(bus)".to_string()),
            };
            let rinfo = match proposed.and_then(|r| self.peers.get(&r)) {
                Some(p) => p.loginfo().to_string(),
                None => "bus".to_string(),
            };
            format!(
                "An AppArmor policy prevents this sender from sending this message to this \
                 recipient; type=\"{}\", sender=\"{sname}\" ({sinfo}) interface=\"{}\" \
                 member=\"{}\" error name=\"{}\" requested_reply=\"{}\" destination=\"{}\" \
                 ({rinfo})",
                type_name(f.msg_type),
                f.interface.unwrap_or("(unset)"),
                f.member.unwrap_or("(unset)"),
                f.error_name.unwrap_or("(unset)"),
                u8::from(requested_reply),
                f.destination.unwrap_or(DBUS_NAME),
            )
        };
        self.mac
            .apparmor_allows_send(&facts, &text)
            .map_err(|(name, text)| Denied { name, text })
    }

    /// SELinux acquire_svc and AppArmor bind for `id` asking for `name`.
    pub fn mac_acquire(&self, id: u64, name: &str) -> Result<(), Denied> {
        let (m, pid) = self.mac_party(id);
        let context = self
            .config
            .selinux_associations
            .get(name)
            .map(String::as_str);
        self.mac
            .allows_acquire(
                m,
                pid,
                name,
                context,
                self.config.bus_type.as_deref(),
                &self.mac_who(id),
            )
            .map_err(|(name, text)| Denied { name, text })
    }

    /// AppArmor eavesdrop for `id` (an eavesdropping match rule, or
    /// BecomeMonitor).
    pub fn mac_eavesdrop(&self, id: u64) -> Result<(), Denied> {
        let (m, pid) = self.mac_party(id);
        self.mac
            .allows_eavesdrop(m, pid, self.config.bus_type.as_deref(), &self.mac_who(id))
            .map_err(|(name, text)| Denied { name, text })
    }
}
