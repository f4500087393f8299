//! The D-Bus error names the bus sends.

/// org.freedesktop.DBus.Error.Failed
pub const FAILED: &str = "org.freedesktop.DBus.Error.Failed";
/// org.freedesktop.DBus.Error.AccessDenied
pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
/// org.freedesktop.DBus.Error.LimitsExceeded
pub const LIMITS_EXCEEDED: &str = "org.freedesktop.DBus.Error.LimitsExceeded";
/// org.freedesktop.DBus.Error.ServiceUnknown
pub const SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";
/// org.freedesktop.DBus.Error.NameHasNoOwner
pub const NAME_HAS_NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";
/// org.freedesktop.DBus.Error.NoReply
pub const NO_REPLY: &str = "org.freedesktop.DBus.Error.NoReply";
/// org.freedesktop.DBus.Error.UnknownMethod
pub const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
/// org.freedesktop.DBus.Error.UnknownInterface
pub const UNKNOWN_INTERFACE: &str = "org.freedesktop.DBus.Error.UnknownInterface";
/// org.freedesktop.DBus.Error.UnknownProperty
pub const UNKNOWN_PROPERTY: &str = "org.freedesktop.DBus.Error.UnknownProperty";
/// org.freedesktop.DBus.Error.PropertyReadOnly
pub const PROPERTY_READ_ONLY: &str = "org.freedesktop.DBus.Error.PropertyReadOnly";
/// org.freedesktop.DBus.Error.InvalidArgs
pub const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
/// org.freedesktop.DBus.Error.MatchRuleInvalid
pub const MATCH_RULE_INVALID: &str = "org.freedesktop.DBus.Error.MatchRuleInvalid";
/// org.freedesktop.DBus.Error.MatchRuleNotFound
pub const MATCH_RULE_NOT_FOUND: &str = "org.freedesktop.DBus.Error.MatchRuleNotFound";
/// org.freedesktop.DBus.Error.NotSupported
pub const NOT_SUPPORTED: &str = "org.freedesktop.DBus.Error.NotSupported";
/// org.freedesktop.DBus.Error.AdtAuditDataUnknown
pub const ADT_AUDIT_DATA_UNKNOWN: &str = "org.freedesktop.DBus.Error.AdtAuditDataUnknown";
/// org.freedesktop.DBus.Error.SELinuxSecurityContextUnknown
pub const SELINUX_CONTEXT_UNKNOWN: &str =
    "org.freedesktop.DBus.Error.SELinuxSecurityContextUnknown";
/// org.freedesktop.DBus.Error.Spawn.ServiceNotFound
pub const SPAWN_SERVICE_NOT_FOUND: &str = "org.freedesktop.DBus.Error.Spawn.ServiceNotFound";
/// org.freedesktop.DBus.Error.Spawn.ExecFailed
pub const SPAWN_EXEC_FAILED: &str = "org.freedesktop.DBus.Error.Spawn.ExecFailed";
/// org.freedesktop.DBus.Error.Spawn.ChildExited
pub const SPAWN_CHILD_EXITED: &str = "org.freedesktop.DBus.Error.Spawn.ChildExited";
/// org.freedesktop.DBus.Error.Spawn.ChildSignaled
pub const SPAWN_CHILD_SIGNALED: &str = "org.freedesktop.DBus.Error.Spawn.ChildSignaled";
/// org.freedesktop.DBus.Error.Spawn.Failed
pub const SPAWN_FAILED: &str = "org.freedesktop.DBus.Error.Spawn.Failed";
/// org.freedesktop.DBus.Error.TimedOut
pub const TIMED_OUT: &str = "org.freedesktop.DBus.Error.TimedOut";
/// org.freedesktop.DBus.Error.Spawn.PermissionsInvalid
pub const SPAWN_PERMISSIONS_INVALID: &str = "org.freedesktop.DBus.Error.Spawn.PermissionsInvalid";
/// org.freedesktop.DBus.Error.Spawn.FileInvalid
pub const SPAWN_FILE_INVALID: &str = "org.freedesktop.DBus.Error.Spawn.FileInvalid";
/// org.freedesktop.DBus.Error.Spawn.NoMemory
pub const SPAWN_NO_MEMORY: &str = "org.freedesktop.DBus.Error.NoMemory";
/// org.freedesktop.DBus.Error.UnixProcessIdUnknown
pub const UNIX_PROCESS_ID_UNKNOWN: &str = "org.freedesktop.DBus.Error.UnixProcessIdUnknown";
