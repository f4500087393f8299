//! The index of activatable services: every `.service` file in the
//! configured directories, with dbus-daemon's rules (the first directory
//! that provides a name wins; strict file naming in the transient
//! directory; files that fail to parse are logged and skipped). The index
//! is rebuilt when a directory's modification time changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use policy::ServiceFile;

/// Activatable services by bus name.
#[derive(Debug, Default)]
pub struct Index {
    entries: HashMap<String, ServiceFile>,
    stamps: Vec<(PathBuf, Option<SystemTime>)>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Index {
    /// Scans `dirs` in order; files in `transient` must be named
    /// `<Name>.service`. (User= is checked by the launch helper, not here.)
    pub fn scan(dirs: &[PathBuf], transient: Option<&Path>) -> Index {
        let mut entries: HashMap<String, ServiceFile> = HashMap::new();
        let mut stamps = Vec::with_capacity(dirs.len());
        for dir in dirs {
            stamps.push((dir.clone(), mtime(dir)));
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "service"))
                .collect();
            files.sort();
            for f in files {
                let sf = match policy::load_service_file(&f) {
                    Ok(sf) => sf,
                    Err(e) => {
                        crate::log::warning(&format!(
                            "Unable to load service file {}: {}",
                            f.display(),
                            e.message
                        ));
                        continue;
                    }
                };
                let strict = transient.is_some_and(|t| t == dir.as_path());
                if strict && !sf.named_correctly() {
                    crate::log::warning(&format!(
                        "Service file \"{}\" should have been named \"{}.service\": not loading it",
                        f.display(),
                        sf.name
                    ));
                    continue;
                }
                if entries.contains_key(&sf.name) {
                    crate::log::warning(&format!(
                        "Service {} already exists in activation entry list ({} ignored)",
                        sf.name,
                        f.display()
                    ));
                    continue;
                }
                entries.insert(sf.name.clone(), sf);
            }
        }
        Index { entries, stamps }
    }

    /// Whether any directory changed since the scan.
    pub fn stale(&self) -> bool {
        self.stamps.iter().any(|(d, t)| mtime(d) != *t)
    }

    /// The service file for `name`.
    pub fn get(&self, name: &str) -> Option<&ServiceFile> {
        self.entries.get(name)
    }

    /// All activatable names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.keys().cloned().collect();
        v.sort();
        v
    }
}
