//! The loaded configuration and the busconfig element handlers
//! (bus/config-parser.c semantics).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{fail, LoadError};
use crate::limits::{parse_c_long, Limits};
use crate::policy::{Policy, PolicyRules};
use crate::rules::{locate, rule_from_element, Rule};
use crate::sys::{numeric_id, standard_system_servicedirs, LoadOptions};

/// A fully loaded configuration (all includes resolved).
///
/// Equality compares everything except `path`, `warnings` and `files`.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was loaded from.
    pub path: PathBuf,
    /// `<type>`: "session", "system", ... (last one wins).
    pub bus_type: Option<String>,
    /// `<user>`
    pub user: Option<String>,
    /// `<fork/>`
    pub fork: bool,
    /// `<keep_umask/>`
    pub keep_umask: bool,
    /// `<syslog/>` (as in dbus-daemon, only when in the top-level file)
    pub syslog: bool,
    /// `<pidfile>`
    pub pidfile: Option<PathBuf>,
    /// `<listen>` addresses, in order.
    pub listen: Vec<String>,
    /// `<auth>` mechanisms, in order (empty: all).
    pub auth: Vec<String>,
    /// `<allow_anonymous/>`
    pub allow_anonymous: bool,
    /// Service directories in search order, standard dirs expanded, no duplicates.
    pub service_dirs: Vec<PathBuf>,
    /// The transient service directory ($XDG_RUNTIME_DIR/dbus-1/services)
    /// when `<standard_session_servicedirs/>` added it; the daemon should
    /// create it (mode 0700), should not watch it, and should only accept
    /// service files in it named after their bus name.
    pub transient_service_dir: Option<PathBuf>,
    /// `<servicehelper>`
    pub service_helper: Option<PathBuf>,
    /// Limits.
    pub limits: Limits,
    /// The compiled security policy.
    pub policy: Policy,
    /// Directories read by `<includedir>` (to watch for reloads).
    pub conf_dirs: Vec<PathBuf>,
    /// `<selinux><associate own=.. context=..>`: bus name → SELinux context.
    pub selinux_associations: BTreeMap<String, String>,
    /// `<apparmor mode=..>`: "required", "enabled" or "disabled".
    pub apparmor_mode: Option<String>,
    /// Non-fatal problems dbus-daemon would log (unknown users, broken
    /// files in an `<includedir>`).
    pub warnings: Vec<String>,
    /// Every file read, the top-level one first.
    pub files: Vec<PathBuf>,
}

impl PartialEq for Config {
    fn eq(&self, o: &Self) -> bool {
        self.bus_type == o.bus_type
            && self.user == o.user
            && self.fork == o.fork
            && self.keep_umask == o.keep_umask
            && self.syslog == o.syslog
            && self.pidfile == o.pidfile
            && self.listen == o.listen
            && self.auth == o.auth
            && self.allow_anonymous == o.allow_anonymous
            && self.service_dirs == o.service_dirs
            && self.transient_service_dir == o.transient_service_dir
            && self.service_helper == o.service_helper
            && self.limits == o.limits
            && self.policy == o.policy
            && self.conf_dirs == o.conf_dirs
            && self.selinux_associations == o.selinux_associations
            && self.apparmor_mode == o.apparmor_mode
    }
}

/// What one file (with its includes) contributes.
#[derive(Default)]
pub(crate) struct Acc {
    pub(crate) bus_type: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) fork: bool,
    pub(crate) keep_umask: bool,
    pub(crate) syslog: bool,
    pub(crate) pidfile: Option<String>,
    pub(crate) listen: Vec<String>,
    pub(crate) auth: Vec<String>,
    pub(crate) allow_anonymous: bool,
    pub(crate) service_dirs: Vec<PathBuf>,
    pub(crate) transient_service_dir: Option<PathBuf>,
    pub(crate) service_helper: Option<PathBuf>,
    pub(crate) limits: Limits,
    pub(crate) rules: PolicyRules,
    pub(crate) conf_dirs: Vec<PathBuf>,
    pub(crate) selinux: BTreeMap<String, String>,
    pub(crate) apparmor_mode: Option<String>,
}

fn push_unique(dirs: &mut Vec<PathBuf>, d: PathBuf) {
    if !dirs.contains(&d) {
        dirs.push(d);
    }
}

impl Acc {
    /// Absorbs an included file's results (dbus-daemon's merge_included;
    /// like it, `<syslog/>` in an included file is not carried over).
    pub(crate) fn merge(&mut self, inc: Acc) {
        self.rules.merge(inc.rules);
        self.selinux.extend(inc.selinux);
        if inc.user.is_some() {
            self.user = inc.user;
        }
        if inc.bus_type.is_some() {
            self.bus_type = inc.bus_type;
        }
        self.fork |= inc.fork;
        self.keep_umask |= inc.keep_umask;
        self.allow_anonymous |= inc.allow_anonymous;
        if inc.pidfile.is_some() {
            self.pidfile = inc.pidfile;
        }
        if inc.service_helper.is_some() {
            self.service_helper = inc.service_helper;
        }
        if inc.transient_service_dir.is_some() {
            self.transient_service_dir = inc.transient_service_dir;
        }
        if inc.apparmor_mode.is_some() {
            self.apparmor_mode = inc.apparmor_mode;
        }
        self.listen.extend(inc.listen);
        self.auth.extend(inc.auth);
        for d in inc.service_dirs {
            push_unique(&mut self.service_dirs, d);
        }
        self.conf_dirs.extend(inc.conf_dirs);
        self.limits = inc.limits;
    }

    pub(crate) fn into_config(
        self,
        path: &Path,
        warnings: Vec<String>,
        files: Vec<PathBuf>,
    ) -> Config {
        Config {
            path: path.to_path_buf(),
            bus_type: self.bus_type,
            user: self.user,
            fork: self.fork,
            keep_umask: self.keep_umask,
            syslog: self.syslog,
            pidfile: self.pidfile.map(PathBuf::from),
            listen: self.listen,
            auth: self.auth,
            allow_anonymous: self.allow_anonymous,
            service_dirs: self.service_dirs,
            transient_service_dir: self.transient_service_dir,
            service_helper: self.service_helper,
            limits: self.limits,
            policy: Policy::from_rules(self.rules),
            conf_dirs: self.conf_dirs,
            selinux_associations: self.selinux,
            apparmor_mode: self.apparmor_mode,
            warnings,
            files,
        }
    }
}

/// The `<policy>` an `<allow>`/`<deny>` is in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ctx {
    /// unknown user or group: rules are dropped
    Ignored,
    Default,
    Mandatory,
    User(u32),
    Group(u32),
    Console(bool),
}

/// An open element.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Busconfig,
    Include {
        ignore_missing: bool,
        if_selinux: bool,
        root_relative: bool,
    },
    User,
    Type,
    Listen,
    Auth,
    Policy(Ctx),
    Limit(String),
    Allow,
    Deny,
    Fork,
    Pidfile,
    Servicedir,
    Servicehelper,
    Includedir,
    Selinux,
    Associate,
    Syslog,
    KeepUmask,
    StdSession,
    StdSystem,
    AllowAnonymous,
    Apparmor,
}

impl Kind {
    /// The element's name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Busconfig => "busconfig",
            Kind::Include { .. } => "include",
            Kind::User => "user",
            Kind::Type => "type",
            Kind::Listen => "listen",
            Kind::Auth => "auth",
            Kind::Policy(_) => "policy",
            Kind::Limit(_) => "limit",
            Kind::Allow => "allow",
            Kind::Deny => "deny",
            Kind::Fork => "fork",
            Kind::Pidfile => "pidfile",
            Kind::Servicedir => "servicedir",
            Kind::Servicehelper => "servicehelper",
            Kind::Includedir => "includedir",
            Kind::Selinux => "selinux",
            Kind::Associate => "associate",
            Kind::Syslog => "syslog",
            Kind::KeepUmask => "keep_umask",
            Kind::StdSession => "standard_session_servicedirs",
            Kind::StdSystem => "standard_system_servicedirs",
            Kind::AllowAnonymous => "allow_anonymous",
            Kind::Apparmor => "apparmor",
        }
    }

    /// Whether the element must contain text.
    pub(crate) fn needs_content(&self) -> bool {
        matches!(
            self,
            Kind::Include { .. }
                | Kind::User
                | Kind::Type
                | Kind::Listen
                | Kind::Pidfile
                | Kind::Auth
                | Kind::Servicedir
                | Kind::Servicehelper
                | Kind::Includedir
                | Kind::Limit(_)
        )
    }
}

fn no_attributes(element: &str, attrs: &[(String, String)]) -> Result<(), LoadError> {
    match attrs.first() {
        Some((n, _)) => fail(format!(
            "Attribute \"{n}\" is invalid on <{element}> element in this context"
        )),
        None => Ok(()),
    }
}

fn yes_no(attr: &str, v: Option<&str>) -> Result<bool, LoadError> {
    match v {
        None | Some("no") => Ok(false),
        Some("yes") => Ok(true),
        Some(_) => fail(format!(
            "{attr} attribute must have value \"yes\" or \"no\""
        )),
    }
}

/// Resolves a user (`group`: a group) name as dbus's config parser does.
fn resolve(opts: &LoadOptions, name: &str, group: bool) -> Option<u32> {
    numeric_id(name).or_else(|| {
        if group {
            (opts.group_id)(name)
        } else {
            (opts.user_id)(name)
        }
    })
}

/// Handles a start tag directly inside `<busconfig>`; returns the element
/// to push.
pub(crate) fn busconfig_child(
    acc: &mut Acc,
    opts: &LoadOptions,
    warnings: &mut Vec<String>,
    name: &str,
    attrs: &[(String, String)],
) -> Result<Kind, LoadError> {
    let simple = |k: Kind| -> Result<Kind, LoadError> {
        no_attributes(k.name(), attrs)?;
        Ok(k)
    };
    match name {
        "user" => simple(Kind::User),
        "type" => simple(Kind::Type),
        "fork" => {
            acc.fork = true;
            simple(Kind::Fork)
        }
        "syslog" => {
            acc.syslog = true;
            simple(Kind::Syslog)
        }
        "keep_umask" => {
            acc.keep_umask = true;
            simple(Kind::KeepUmask)
        }
        "pidfile" => simple(Kind::Pidfile),
        "listen" => simple(Kind::Listen),
        "auth" => simple(Kind::Auth),
        "servicehelper" => simple(Kind::Servicehelper),
        "includedir" => simple(Kind::Includedir),
        "servicedir" => simple(Kind::Servicedir),
        "selinux" => simple(Kind::Selinux),
        "allow_anonymous" => {
            no_attributes(name, attrs)?;
            acc.allow_anonymous = true;
            Ok(Kind::AllowAnonymous)
        }
        "standard_session_servicedirs" => {
            no_attributes(name, attrs)?;
            if let Some(t) = opts.transient_servicedir() {
                push_unique(&mut acc.service_dirs, t.clone());
                acc.transient_service_dir = Some(t);
            }
            for d in opts.standard_session_servicedirs() {
                push_unique(&mut acc.service_dirs, d);
            }
            Ok(Kind::StdSession)
        }
        "standard_system_servicedirs" => {
            no_attributes(name, attrs)?;
            for d in standard_system_servicedirs() {
                push_unique(&mut acc.service_dirs, d);
            }
            Ok(Kind::StdSystem)
        }
        "include" => {
            let a = locate(
                name,
                attrs,
                &[
                    "ignore_missing",
                    "if_selinux_enabled",
                    "selinux_root_relative",
                ],
            )?;
            Ok(Kind::Include {
                ignore_missing: yes_no("ignore_missing", a[0])?,
                if_selinux: yes_no("if_selinux_enabled", a[1])?,
                root_relative: yes_no("selinux_root_relative", a[2])?,
            })
        }
        "policy" => {
            let a = locate(name, attrs, &["context", "user", "group", "at_console"])?;
            if a.iter().filter(|v| v.is_some()).count() != 1 {
                return fail("<policy> element must have exactly one of (context|user|group|at_console) attributes");
            }
            let ctx = match (a[0], a[1], a[2], a[3]) {
                (Some("default"), ..) => Ctx::Default,
                (Some("mandatory"), ..) => Ctx::Mandatory,
                (Some(c), ..) => {
                    return fail(format!(
                        "context attribute on <policy> must have the value \"default\" or \"mandatory\", not \"{c}\""
                    ))
                }
                (_, Some(u), ..) => resolve(opts, u, false).map(Ctx::User).unwrap_or_else(|| {
                    warnings.push(format!("Unknown username \"{u}\" in message bus configuration file"));
                    Ctx::Ignored
                }),
                (_, _, Some(g), _) => resolve(opts, g, true).map(Ctx::Group).unwrap_or_else(|| {
                    warnings.push(format!("Unknown group \"{g}\" in message bus configuration file"));
                    Ctx::Ignored
                }),
                (_, _, _, Some("true")) => Ctx::Console(true),
                (_, _, _, Some("false")) => Ctx::Console(false),
                (_, _, _, Some(v)) => {
                    return fail(format!("Unknown value \"{v}\" for at_console in message bus configuration file"))
                }
                (None, None, None, None) => Ctx::Ignored,
            };
            Ok(Kind::Policy(ctx))
        }
        "limit" => {
            let a = locate(name, attrs, &["name"])?;
            match a[0] {
                Some(n) => Ok(Kind::Limit(n.to_owned())),
                None => fail("<limit> element must have a \"name\" attribute"),
            }
        }
        "apparmor" => {
            let a = locate(name, attrs, &["mode"])?;
            match a[0] {
                None => {}
                Some(m @ ("required" | "enabled" | "disabled")) => acc.apparmor_mode = Some(m.to_owned()),
                Some(m) => {
                    return fail(format!(
                        "Mode attribute on <apparmor> must have value \"required\", \"enabled\" or \"disabled\", not \"{m}\""
                    ))
                }
            }
            Ok(Kind::Apparmor)
        }
        _ => fail(format!(
            "Element <{name}> not allowed inside <busconfig> in configuration file"
        )),
    }
}

/// Handles `<allow>`/`<deny>` inside a `<policy>` of context `ctx`.
pub(crate) fn policy_child(
    acc: &mut Acc,
    opts: &LoadOptions,
    warnings: &mut Vec<String>,
    ctx: Ctx,
    name: &str,
    attrs: &[(String, String)],
) -> Result<Kind, LoadError> {
    let allow = match name {
        "allow" => true,
        "deny" => false,
        _ => {
            return fail(format!(
                "Element <{name}> not allowed inside <policy> in configuration file"
            ))
        }
    };
    let user_id = |n: &str| resolve(opts, n, false);
    let group_id = |n: &str| resolve(opts, n, true);
    let Some(rule) = rule_from_element(name, attrs, allow, &user_id, &group_id, warnings)? else {
        return Ok(if allow { Kind::Allow } else { Kind::Deny });
    };
    let per_client = |what: &str, rule: Rule| -> Result<Rule, LoadError> {
        if rule.is_per_client() {
            Ok(rule)
        } else {
            fail(format!(
                "<{name}> rule cannot be per-{what} because it has bus-global semantics"
            ))
        }
    };
    let r = &mut acc.rules;
    match ctx {
        Ctx::Ignored => {}
        Ctx::Default => r.default.push(rule),
        Ctx::Mandatory => r.mandatory.push(rule),
        Ctx::User(uid) => r
            .by_user
            .entry(uid)
            .or_default()
            .push(per_client("user", rule)?),
        Ctx::Group(gid) => r
            .by_group
            .entry(gid)
            .or_default()
            .push(per_client("group", rule)?),
        Ctx::Console(true) => r.at_console.push(rule),
        Ctx::Console(false) => r.not_at_console.push(rule),
    }
    Ok(if allow { Kind::Allow } else { Kind::Deny })
}

/// Handles `<associate>` inside `<selinux>`.
pub(crate) fn selinux_child(
    acc: &mut Acc,
    name: &str,
    attrs: &[(String, String)],
) -> Result<Kind, LoadError> {
    if name != "associate" {
        return fail(format!(
            "Element <{name}> not allowed inside <selinux> in configuration file"
        ));
    }
    let a = locate(name, attrs, &["own", "context"])?;
    match (a[0], a[1]) {
        (Some(own), Some(context)) => {
            acc.selinux.insert(own.to_owned(), context.to_owned());
            Ok(Kind::Associate)
        }
        _ => fail(
            "Element <associate> must have attributes own=\"<servicename>\" and context=\"<selinux context>\"",
        ),
    }
}

/// Text inside an element that takes a plain value; parses `<limit>` values.
/// Returns the limit value for `<limit>`.
pub(crate) fn simple_content(
    acc: &mut Acc,
    kind: &Kind,
    text: &str,
) -> Result<Option<i64>, LoadError> {
    match kind {
        Kind::Pidfile => acc.pidfile = Some(text.to_owned()),
        Kind::User => acc.user = Some(text.to_owned()),
        Kind::Type => acc.bus_type = Some(text.to_owned()),
        Kind::Listen => acc.listen.push(text.to_owned()),
        Kind::Auth => acc.auth.push(text.to_owned()),
        Kind::Limit(name) => match parse_c_long(text) {
            Some(v) => return Ok(Some(v)),
            None => {
                return fail(format!(
                "<limit name=\"{name}\"> element has invalid value (could not parse as integer)"
            ))
            }
        },
        _ => {
            if !text
                .bytes()
                .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            {
                return fail(format!(
                    "No text content expected inside XML element {} in configuration file",
                    kind.name()
                ));
            }
        }
    }
    Ok(None)
}
