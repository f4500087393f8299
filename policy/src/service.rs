//! `.service` files for bus activation (dbus-daemon's desktop-file parser,
//! bus/desktop-file.c, and the keys bus/activation.c reads).

use std::fmt;
use std::path::{Path, PathBuf};

/// The group activation keys live in.
pub const SERVICE_SECTION: &str = "D-BUS Service";

/// dbus-daemon refuses service files larger than this.
pub const MAX_SERVICE_FILE_SIZE: u64 = 128 * 1024;

/// A parsed `.service` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFile {
    /// The file it came from.
    pub path: PathBuf,
    /// `Name=`: the bus name it provides.
    pub name: String,
    /// `Exec=`: the command line (split it with [`crate::split_exec`]).
    pub exec: String,
    /// `User=` (required for system services, see [`ServiceFile::check_system`]).
    pub user: Option<String>,
    /// `SystemdService=`
    pub systemd_service: Option<String>,
    /// `AssumedAppArmorLabel=`
    pub assumed_apparmor_label: Option<String>,
}

/// Why a `.service` file was rejected; `Display` is dbus-daemon's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// The message.
    pub message: String,
    /// The error is a missing key (dbus-daemon reports a missing `User` or
    /// `Exec` on the system bus as a distinct launch-helper error).
    pub missing_key: Option<&'static str>,
}

impl ServiceError {
    fn new(message: impl Into<String>) -> Self {
        ServiceError {
            message: message.into(),
            missing_key: None,
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

/// A desktop-entry style file: groups of key/value lines, in order.
type Sections = Vec<(String, Vec<(String, String)>)>;

/// Splits `data` into lines the way dbus does (`\n`, `\r\n` or `\r`).
fn lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\n', '\r']) {
            Some(i) => {
                let line = &rest[..i];
                let eol = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + eol..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

fn unescape(v: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\0' => return Err("Text to be unescaped contains embedded nul"),
            '\\' => match chars.next() {
                None => return Err("Text to be unescaped ended in \\"),
                Some('s') => out.push(' '),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some(_) => return Err("Text to be unescaped had invalid escape sequence"),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

fn parse_sections(data: &str) -> Result<Sections, ServiceError> {
    let mut sections: Sections = Vec::new();
    for (n, line) in lines(data).enumerate() {
        let line_num = n + 1;
        let report = |sections: &Sections, msg: &str| {
            Err(ServiceError::new(match sections.last() {
                Some((name, _)) => format!("Error in section {name} at line {line_num}: {msg}"),
                None => format!("Error at line {line_num}: {msg}"),
            }))
        };
        if line.starts_with('[') {
            if line.len() <= 2 || !line.ends_with(']') {
                return report(&sections, "Invalid syntax for section header");
            }
            let name = &line[1..line.len() - 1];
            if name
                .bytes()
                .any(|c| c <= 0x1f || c >= 0x7f || c == b'[' || c == b']')
            {
                return report(&sections, "Invalid characters in section name");
            }
            sections.push((name.to_owned(), Vec::new()));
            continue;
        }
        if line.starts_with('#')
            || line
                .bytes()
                .all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0x0c))
        {
            continue;
        }
        if sections.is_empty() {
            return Err(ServiceError::new(
                "invalid service file: key=value before [Section]",
            ));
        }
        let key_len = line
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == b'-')
            .count();
        if key_len == 0 {
            return report(&sections, "Empty key name");
        }
        let (key, rest) = line.split_at(key_len);
        if rest.starts_with('[') {
            continue; // localised keys are ignored
        }
        let rest = rest.trim_start_matches(' ');
        let Some(value) = rest.strip_prefix('=') else {
            let msg = if rest.is_empty() {
                "No '=' in key/value pair"
            } else {
                "Invalid characters in key name"
            };
            return report(&sections, msg);
        };
        let value = match unescape(value.trim_start_matches(' ')) {
            Ok(v) => v,
            Err(msg) => return report(&sections, msg),
        };
        if let Some((_, entries)) = sections.last_mut() {
            entries.push((key.to_owned(), value));
        }
    }
    Ok(sections)
}

/// Parses a `.service` file's text; `path` names it.
/// Name and Exec are required; for the system bus also call
/// [`ServiceFile::check_system`].
pub fn parse_service_file(text: &str, path: &Path) -> Result<ServiceFile, ServiceError> {
    let sections = parse_sections(text)?;
    let section = sections
        .iter()
        .find(|(n, _)| n == SERVICE_SECTION)
        .map(|(_, e)| e.as_slice())
        .unwrap_or_default();
    let get = |key: &str| {
        section
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let required = |key: &'static str| {
        get(key).ok_or(ServiceError {
            message: format!("No \"{key}\" key in .service file"),
            missing_key: Some(key),
        })
    };
    Ok(ServiceFile {
        path: path.to_path_buf(),
        name: required("Name")?,
        exec: required("Exec")?,
        user: get("User"),
        systemd_service: get("SystemdService"),
        assumed_apparmor_label: get("AssumedAppArmorLabel"),
    })
}

/// Reads and parses a `.service` file (with dbus-daemon's size and UTF-8 checks).
pub fn load_service_file(path: &Path) -> Result<ServiceFile, ServiceError> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| ServiceError::new(format!("Failed to stat \"{shown}\": {e}")))?;
    if meta.len() > MAX_SERVICE_FILE_SIZE {
        return Err(ServiceError::new(format!(
            "Desktop file size ({} bytes) is too large",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ServiceError::new(format!("Failed to open \"{shown}\": {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| ServiceError::new("invalid UTF-8"))?;
    parse_service_file(&text, path)
}

impl ServiceFile {
    /// The extra requirement for system services: a `User=` key.
    pub fn check_system(&self) -> Result<(), ServiceError> {
        match self.user {
            Some(_) => Ok(()),
            None => Err(ServiceError {
                message: "No \"User\" key in .service file".to_owned(),
                missing_key: Some("User"),
            }),
        }
    }

    /// Whether the file is named after its bus name (`<Name>.service`), as
    /// required in the transient directory.
    pub fn named_correctly(&self) -> bool {
        self.path
            .file_name()
            .is_some_and(|f| f.to_string_lossy() == format!("{}.service", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ServiceFile, ServiceError> {
        parse_service_file(s, Path::new("/x/org.example.Foo.service"))
    }

    #[test]
    fn basic() {
        let f = parse(
            "# comment\n\n[D-BUS Service]\nName=org.example.Foo\nExec = /bin/foo\\s--x\r\nUser=root\n\
             Name[de]=ignored\nSystemdService=foo.service\nAssumedAppArmorLabel=/bin/foo\n[Other]\nName=no\n",
        )
        .unwrap();
        assert_eq!(f.name, "org.example.Foo");
        assert_eq!(f.exec, "/bin/foo --x");
        assert_eq!(f.user.as_deref(), Some("root"));
        assert_eq!(f.systemd_service.as_deref(), Some("foo.service"));
        assert_eq!(f.assumed_apparmor_label.as_deref(), Some("/bin/foo"));
        assert!(f.check_system().is_ok());
        assert!(f.named_correctly());
    }

    #[test]
    fn errors() {
        let e = |s: &str| parse(s).unwrap_err().message;
        assert_eq!(
            e("Name=x\n"),
            "invalid service file: key=value before [Section]"
        );
        assert_eq!(
            e("[D-BUS Service\n"),
            "Error at line 1: Invalid syntax for section header"
        );
        assert_eq!(
            e("[D-BUS Service]\n=x\n"),
            "Error in section D-BUS Service at line 2: Empty key name"
        );
        assert_eq!(
            e("[D-BUS Service]\nName x\n"),
            "Error in section D-BUS Service at line 2: Invalid characters in key name"
        );
        assert_eq!(
            e("[D-BUS Service]\nName\n"),
            "Error in section D-BUS Service at line 2: No '=' in key/value pair"
        );
        assert_eq!(
            e("[D-BUS Service]\nName=a\\q\n"),
            "Error in section D-BUS Service at line 2: Text to be unescaped had invalid escape sequence"
        );
        assert_eq!(
            e("[D-BUS Service]\nExec=/bin/true\n"),
            "No \"Name\" key in .service file"
        );
        assert_eq!(
            e("[D-BUS Service]\nName=a\n"),
            "No \"Exec\" key in .service file"
        );
        let f = parse("[D-BUS Service]\nName=a\nExec=b\n").unwrap();
        assert_eq!(f.check_system().unwrap_err().missing_key, Some("User"));
    }
}
