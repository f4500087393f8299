//! Reading configuration files: the XML event loop, `<include>`,
//! `<includedir>` and relative paths.

use std::path::{Path, PathBuf};

use crate::config::{
    busconfig_child, policy_child, selinux_child, simple_content, Acc, Config, Kind,
};
use crate::error::{fail, ConfigError, LoadError};
use crate::limits::Limits;
use crate::sys::LoadOptions;
use crate::xml::{Event, Reader};

/// An open element and whether text was seen in it.
struct Open {
    kind: Kind,
    had_content: bool,
    limit: Option<i64>,
}

/// State shared by a whole load (all included files).
pub(crate) struct Loader<'o> {
    opts: &'o LoadOptions,
    /// Files being included (not the top-level one, like dbus-daemon).
    including: Vec<PathBuf>,
    warnings: Vec<String>,
    files: Vec<PathBuf>,
}

/// The text of an io error without Rust's " (os error N)" suffix, i.e. strerror.
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The directory relative names in `file` resolve against.
fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl<'o> Loader<'o> {
    pub(crate) fn new(opts: &'o LoadOptions) -> Self {
        Loader {
            opts,
            including: Vec::new(),
            warnings: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Loads a top-level configuration from text.
    pub(crate) fn load_top_str(mut self, text: &str, path: &Path) -> Result<Config, ConfigError> {
        self.files.push(path.to_path_buf());
        let acc = self.parse(text, path, Limits::default(), true)?;
        Ok(acc.into_config(path, self.warnings, self.files))
    }

    /// Loads a top-level configuration file.
    pub(crate) fn load_top_file(mut self, path: &Path) -> Result<Config, ConfigError> {
        let acc = self.load_file(path, Limits::default(), true)?;
        Ok(acc.into_config(path, self.warnings, self.files))
    }

    fn load_file(&mut self, path: &Path, limits: Limits, toplevel: bool) -> Result<Acc, LoadError> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| LoadError {
            error: ConfigError::new(format!("Failed to open \"{shown}\": {}", strerror(&e))),
            not_found: e.kind() == std::io::ErrorKind::NotFound,
        })?;
        if !meta.is_file() {
            return fail(format!("\"{shown}\" is not a regular file"));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| LoadError::msg(format!("Error reading \"{shown}\": {}", strerror(&e))))?;
        self.files.push(path.to_path_buf());
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                let x = crate::xml::position(&bytes, "not well-formed (invalid token)", valid);
                return fail(format!(
                    "Error in file {shown}, line {}, column {}: {}",
                    x.line, x.column, x.msg
                ));
            }
        };
        self.parse(&text, path, limits, toplevel)
    }

    /// Parses one file's text; `limits` are inherited from the includer.
    fn parse(
        &mut self,
        text: &str,
        path: &Path,
        limits: Limits,
        toplevel: bool,
    ) -> Result<Acc, LoadError> {
        let mut reader = Reader::new(text);
        self.parse_events(&mut reader, path, limits, toplevel)
            .map_err(|mut e| {
                // Errors found by this file's elements carry its name and
                // the line reached; errors from an included file keep theirs.
                if e.error.line.is_none() {
                    e.error.file = Some(path.to_path_buf());
                    e.error.line = Some(reader.line());
                }
                e
            })
    }

    fn parse_events(
        &mut self,
        reader: &mut Reader<'_>,
        path: &Path,
        limits: Limits,
        toplevel: bool,
    ) -> Result<Acc, LoadError> {
        let base = base_dir(path);
        let mut acc = Acc {
            limits,
            ..Acc::default()
        };
        let mut stack: Vec<Open> = Vec::new();
        let mut pending = String::new();
        loop {
            let event = match reader.next_event() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(x) => {
                    return fail(format!(
                        "Error in file {}, line {}, column {}: {}",
                        path.display(),
                        x.line,
                        x.column,
                        x.msg
                    ))
                }
            };
            if !matches!(event, Event::Text(_)) && !pending.is_empty() {
                let text = std::mem::take(&mut pending);
                self.content(&mut acc, &mut stack, &base, &text)?;
            }
            match event {
                Event::Text(t) => pending.push_str(&t),
                Event::Start { name, attrs } => {
                    let kind = match stack.last().map(|o| &o.kind) {
                        None if name == "busconfig" => match attrs.first() {
                            Some((a, _)) => {
                                return fail(format!("Attribute \"{a}\" is invalid on <busconfig> element in this context"))
                            }
                            None => Kind::Busconfig,
                        },
                        None => return fail(format!("Unknown element <{name}> at root of configuration file")),
                        Some(Kind::Busconfig) => busconfig_child(&mut acc, self.opts, &mut self.warnings, &name, &attrs)?,
                        Some(Kind::Policy(ctx)) => {
                            let ctx = *ctx;
                            policy_child(&mut acc, self.opts, &mut self.warnings, ctx, &name, &attrs)?
                        }
                        Some(Kind::Selinux) => selinux_child(&mut acc, &name, &attrs)?,
                        Some(_) => return fail(format!("Element <{name}> is not allowed in this context")),
                    };
                    stack.push(Open {
                        kind,
                        had_content: false,
                        limit: None,
                    });
                }
                Event::End { name } => {
                    let Some(open) = stack.pop() else {
                        return fail("XML parser ended element with no element on the stack");
                    };
                    if open.kind.name() != name {
                        return fail(format!(
                            "XML element <{name}> ended but topmost element on the stack was <{}>",
                            open.kind.name()
                        ));
                    }
                    if open.kind.needs_content() && !open.had_content {
                        return fail(format!(
                            "XML element <{name}> was expected to have content inside it"
                        ));
                    }
                    if let (Kind::Limit(n), Some(v)) = (&open.kind, open.limit) {
                        acc.limits.set(n, v)?;
                    }
                }
            }
        }
        if toplevel && acc.listen.is_empty() {
            return fail("Configuration file needs one or more <listen> elements giving addresses");
        }
        Ok(acc)
    }

    /// Text content of the innermost element.
    fn content(
        &mut self,
        acc: &mut Acc,
        stack: &mut [Open],
        base: &Path,
        text: &str,
    ) -> Result<(), LoadError> {
        let Some(open) = stack.last_mut() else {
            return fail("Text content outside of any XML element in configuration file");
        };
        if open.kind.needs_content() {
            open.had_content = true;
        }
        match &open.kind {
            Kind::Include {
                ignore_missing,
                if_selinux,
                root_relative,
            } => {
                if *if_selinux && !self.opts.selinux_enabled {
                    return Ok(());
                }
                let ignore = *ignore_missing;
                if *root_relative {
                    // dbus-daemon: relative to libselinux's policy root.
                    let Some(root) = self.opts.selinux_policy_root.clone() else {
                        return fail(
                            "Could not determine SELinux policy root for relative inclusion",
                        );
                    };
                    return self.include_file(acc, &root.join(text), ignore);
                }
                self.include_file(acc, &base.join(text), ignore)
            }
            Kind::Servicehelper => {
                acc.service_helper = Some(base.join(text));
                Ok(())
            }
            Kind::Servicedir => {
                let d = base.join(text);
                if !acc.service_dirs.contains(&d) {
                    acc.service_dirs.push(d);
                }
                Ok(())
            }
            Kind::Includedir => self.include_dir(acc, &base.join(text)),
            kind => {
                open.limit = simple_content(acc, kind, text)?;
                Ok(())
            }
        }
    }

    fn include_file(
        &mut self,
        acc: &mut Acc,
        file: &Path,
        ignore_missing: bool,
    ) -> Result<(), LoadError> {
        if self.including.iter().any(|f| f == file) {
            return fail(format!("Circular inclusion of file '{}'", file.display()));
        }
        self.including.push(file.to_path_buf());
        let result = self.load_file(file, acc.limits.clone(), false);
        self.including.pop();
        match result {
            Ok(inc) => {
                acc.merge(inc);
                Ok(())
            }
            Err(e) if e.not_found && ignore_missing => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn include_dir(&mut self, acc: &mut Acc, dir: &Path) -> Result<(), LoadError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return fail(format!(
                    "Failed to read directory \"{}\": {}",
                    dir.display(),
                    strerror(&e)
                ))
            }
        };
        let mut names: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let file = dir.join(&name);
            if !file.as_os_str().as_encoded_bytes().ends_with(b".conf") {
                continue;
            }
            if let Err(e) = self.include_file(acc, &file, true) {
                self.warnings.push(format!(
                    "Encountered error '{}' while parsing '{}'",
                    e.error.message,
                    file.display()
                ));
            }
        }
        acc.conf_dirs.push(dir.to_path_buf());
        Ok(())
    }
}
