//! Policy rules as written in `<allow>`/`<deny>` elements, and their
//! construction from attributes with dbus-daemon's validation and messages.

use crate::error::{fail, LoadError};
use crate::msg_type;

/// dbus's DBUS_MAXIMUM_MESSAGE_UNIX_FDS: the default `max_fds`.
pub const MAX_MESSAGE_UNIX_FDS: u32 = 1 << 25;

/// How a rule matches a bus name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NameMatch {
    /// Any name (attribute absent or `*`).
    Any,
    /// Exactly this name.
    Exact(String),
    /// This name or one below it (`prefix` or `prefix.` followed by anything).
    Prefix(String),
}

impl NameMatch {
    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameMatch::Any => true,
            NameMatch::Exact(n) => n == name,
            NameMatch::Prefix(p) => starts_with_words(name, p),
        }
    }
}

/// `name == prefix` or `name` starts with `prefix` followed by a '.'.
pub fn starts_with_words(name: &str, prefix: &str) -> bool {
    match name.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('.'),
        None => false,
    }
}

/// A send or receive rule. `None` fields are wildcards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRule {
    /// allow (true) or deny (false)
    pub allow: bool,
    /// send_type / receive_type
    pub msg_type: Option<u8>,
    /// send_path / receive_path
    pub path: Option<String>,
    /// send_interface / receive_interface
    pub interface: Option<String>,
    /// send_member / receive_member
    pub member: Option<String>,
    /// send_error / receive_error
    pub error: Option<String>,
    /// send_destination(_prefix) / receive_sender
    pub name: NameMatch,
    /// send_broadcast (send rules only): Some(true) only broadcasts,
    /// Some(false) only unicast.
    pub broadcast: Option<bool>,
    /// send_requested_reply / receive_requested_reply (default: `allow`)
    pub requested_reply: bool,
    /// eavesdrop
    pub eavesdrop: bool,
    /// min_fds
    pub min_fds: u32,
    /// max_fds
    pub max_fds: u32,
    /// log (send rules only)
    pub log: bool,
}

impl MessageRule {
    /// dbus-daemon's "wildcard" test used to drop earlier rules of the same
    /// kind: no type, path, interface, member, error or name restriction.
    pub fn is_wildcard(&self) -> bool {
        self.msg_type.is_none()
            && self.path.is_none()
            && self.interface.is_none()
            && self.member.is_none()
            && self.error.is_none()
            && self.name == NameMatch::Any
    }
}

/// One rule of a `<policy>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// send_* rule
    Send(MessageRule),
    /// receive_* rule (or a lone `eavesdrop`)
    Receive(MessageRule),
    /// own / own_prefix
    Own {
        /// allow or deny
        allow: bool,
        /// the name(s)
        name: NameMatch,
    },
    /// user= (None: `*`)
    User {
        /// allow or deny
        allow: bool,
        /// uid, None for any
        uid: Option<u32>,
    },
    /// group= (None: `*`)
    Group {
        /// allow or deny
        allow: bool,
        /// gid, None for any
        gid: Option<u32>,
    },
}

impl Rule {
    /// Whether the rule applies per connection (not user/group).
    pub fn is_per_client(&self) -> bool {
        !matches!(self, Rule::User { .. } | Rule::Group { .. })
    }
}

/// The attribute names `<allow>`/`<deny>` accept, in dbus-daemon's order.
const RULE_ATTRS: &[&str] = &[
    "send_interface",
    "send_member",
    "send_error",
    "send_destination",
    "send_destination_prefix",
    "send_path",
    "send_type",
    "send_broadcast",
    "receive_interface",
    "receive_member",
    "receive_error",
    "receive_sender",
    "receive_path",
    "receive_type",
    "eavesdrop",
    "max_fds",
    "min_fds",
    "send_requested_reply",
    "receive_requested_reply",
    "own",
    "own_prefix",
    "user",
    "group",
    "log",
];

/// Looks attributes up by name, rejecting unknown ones like dbus-daemon.
pub(crate) fn locate<'a>(
    element: &str,
    attrs: &'a [(String, String)],
    known: &[&str],
) -> Result<Vec<Option<&'a str>>, LoadError> {
    let mut found = vec![None; known.len()];
    for (name, value) in attrs {
        match known.iter().position(|k| k == name) {
            Some(i) => {
                if found[i].is_some() {
                    return fail(format!(
                        "Attribute \"{name}\" repeated twice on the same <{element}> element"
                    ));
                }
                found[i] = Some(value.as_str());
            }
            None => {
                return fail(format!(
                    "Attribute \"{name}\" is invalid on <{element}> element in this context"
                ))
            }
        }
    }
    Ok(found)
}

fn wildcard(v: Option<&str>) -> Option<&str> {
    v.filter(|s| *s != "*")
}

fn type_from_str(s: &str) -> Option<u8> {
    match s {
        "method_call" => Some(msg_type::METHOD_CALL),
        "method_return" => Some(msg_type::METHOD_RETURN),
        "signal" => Some(msg_type::SIGNAL),
        "error" => Some(msg_type::ERROR),
        _ => None,
    }
}

/// dbus-daemon's true/false check. Note that for some attributes
/// dbus-daemon passes the format arguments the other way round; `swapped`
/// reproduces its text exactly.
fn check_bool(attr: &str, value: Option<&str>, swapped: bool) -> Result<Option<bool>, LoadError> {
    match value {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => {
            let (a, b) = if swapped { (attr, v) } else { (v, attr) };
            fail(format!(
                "Bad value \"{a}\" for {b} attribute, must be true or false"
            ))
        }
    }
}

fn fds_attr(name: &str, value: Option<&str>, def: u32) -> Result<u32, LoadError> {
    let Some(v) = value else { return Ok(def) };
    match crate::limits::parse_c_long(v) {
        Some(n) if (0..=i64::from(MAX_MESSAGE_UNIX_FDS)).contains(&n) => Ok(u32::try_from(n).unwrap_or(def)),
        _ => fail(format!(
            "Bad value \"{v}\" for {name} attribute, must be an integer in range 0 to {MAX_MESSAGE_UNIX_FDS} inclusive"
        )),
    }
}

/// How a user or group name resolves (None: unknown).
pub(crate) type Resolve<'r> = &'r dyn Fn(&str) -> Option<u32>;

/// Builds the rule an `<allow>` (`allow`) or `<deny>` element describes.
/// `Ok(None)`: a rule naming an unknown user or group, which is dropped
/// (a warning is pushed onto `warnings`).
pub(crate) fn rule_from_element(
    element: &str,
    attrs: &[(String, String)],
    allow: bool,
    user_id: Resolve<'_>,
    group_id: Resolve<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<Rule>, LoadError> {
    let a = locate(element, attrs, RULE_ATTRS)?;
    let [s_iface, s_member, s_error, s_dest, s_dest_prefix, s_path, s_type, s_bcast, r_iface, r_member, r_error, r_sender, r_path, r_type, eavesdrop, max_fds, min_fds, s_rr, r_rr, own, own_prefix, user, group, log] =
        a[..]
    else {
        return fail("internal error locating attributes");
    };
    let any_send = [
        s_dest,
        s_dest_prefix,
        s_bcast,
        s_path,
        s_type,
        s_iface,
        s_member,
        s_error,
        s_rr,
    ]
    .iter()
    .any(Option::is_some);
    let any_receive = [r_sender, r_path, r_type, r_iface, r_member, r_error, r_rr]
        .iter()
        .any(Option::is_some)
        || (!any_send && eavesdrop.is_some());
    let any_message =
        any_send || any_receive || eavesdrop.is_some() || max_fds.is_some() || min_fds.is_some();
    if !(any_send
        || any_receive
        || own.is_some()
        || own_prefix.is_some()
        || user.is_some()
        || group.is_some())
    {
        return fail(format!(
            "Element <{element}> must have one or more attributes"
        ));
    }
    if (s_member.is_some() && s_iface.is_none() && s_path.is_none())
        || (r_member.is_some() && r_iface.is_none() && r_path.is_none())
    {
        return fail(format!(
            "On element <{element}>, if you specify a member you must specify an interface or a path. \
             Keep in mind that not all messages have an interface field."
        ));
    }
    let singles = [own, own_prefix, user, group]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if usize::from(any_message) + singles > 1 {
        return fail(format!(
            "Invalid combination of attributes on element <{element}>: own, own_prefix, user, group and the \
             message-related attributes cannot be combined"
        ));
    }
    let combo = |what: &str| {
        fail(format!(
            "Invalid combination of attributes on element <{element}>: {what}"
        ))
    };
    if any_send && any_receive {
        return combo("send and receive attributes cannot be combined");
    }
    if (s_member.is_some() || s_iface.is_some()) && s_error.is_some() {
        return combo("send_error cannot be combined with send_member or send_interface");
    }
    if s_dest.is_some() && s_dest_prefix.is_some() {
        return combo("send_destination cannot be combined with send_destination_prefix");
    }
    if (r_member.is_some() || r_iface.is_some()) && r_error.is_some() {
        return combo("receive_error cannot be combined with receive_member or receive_interface");
    }

    if any_send || any_receive {
        let send = any_send;
        let (iface, member, error, path, ty, rr) = if send {
            (s_iface, s_member, s_error, s_path, s_type, s_rr)
        } else {
            (r_iface, r_member, r_error, r_path, r_type, r_rr)
        };
        let msg_type = match wildcard(ty) {
            None => None,
            Some(t) => match type_from_str(t) {
                Some(t) => Some(t),
                None => return fail(format!("Bad message type \"{t}\"")),
            },
        };
        let eavesdrop = check_bool("eavesdrop", eavesdrop, true)?;
        let mut broadcast = None;
        let name;
        if send {
            broadcast = check_bool("send_broadcast", s_bcast, false)?;
            let dest = wildcard(s_dest);
            if let (Some(d), Some(true)) = (dest, broadcast) {
                return fail(format!("Rule with send_broadcast=\"true\" and send_destination=\"{d}\" cannot match anything"));
            }
            name = match (dest, s_dest_prefix) {
                (Some(d), _) => NameMatch::Exact(d.to_owned()),
                (None, Some(p)) => NameMatch::Prefix(p.to_owned()),
                (None, None) => NameMatch::Any,
            };
        } else {
            name = wildcard(r_sender).map_or(NameMatch::Any, |s| NameMatch::Exact(s.to_owned()));
        }
        let rr_attr = if send {
            "send_requested_reply"
        } else {
            "receive_requested_reply"
        };
        let requested_reply = check_bool(rr_attr, rr, true)?;
        let max_fds = fds_attr("max_fds", max_fds, MAX_MESSAGE_UNIX_FDS)?;
        let min_fds = fds_attr("min_fds", min_fds, 0)?;
        let rule = MessageRule {
            allow,
            msg_type,
            path: wildcard(path).map(str::to_owned),
            interface: wildcard(iface).map(str::to_owned),
            member: wildcard(member).map(str::to_owned),
            error: wildcard(error).map(str::to_owned),
            name,
            broadcast,
            requested_reply: requested_reply.unwrap_or(allow),
            eavesdrop: eavesdrop.unwrap_or(false),
            min_fds,
            max_fds,
            log: send && log == Some("true"),
        };
        return Ok(Some(if send {
            Rule::Send(rule)
        } else {
            Rule::Receive(rule)
        }));
    }
    if let Some(o) = own {
        let name = wildcard(Some(o)).map_or(NameMatch::Any, |n| NameMatch::Exact(n.to_owned()));
        return Ok(Some(Rule::Own { allow, name }));
    }
    if let Some(p) = own_prefix {
        return Ok(Some(Rule::Own {
            allow,
            name: NameMatch::Prefix(p.to_owned()),
        }));
    }
    if let Some(u) = user {
        if u == "*" {
            return Ok(Some(Rule::User { allow, uid: None }));
        }
        return Ok(match user_id(u) {
            Some(uid) => Some(Rule::User {
                allow,
                uid: Some(uid),
            }),
            None => {
                warnings.push(format!("Unknown username \"{u}\" on element <{element}>"));
                None
            }
        });
    }
    if let Some(g) = group {
        if g == "*" {
            return Ok(Some(Rule::Group { allow, gid: None }));
        }
        return Ok(match group_id(g) {
            Some(gid) => Some(Rule::Group {
                allow,
                gid: Some(gid),
            }),
            None => {
                warnings.push(format!("Unknown group \"{g}\" on element <{element}>"));
                None
            }
        });
    }
    fail(format!(
        "Element <{element}> must have one or more attributes"
    ))
}
