//! Every runtime crate is used and explained (issue 8, point 9): each
//! `[dependencies]` entry of the daemon and of `policy/` is referred to by
//! its crate's sources and named in the README's Dependencies section.
//! (This looks at the checkout, not at a daemon, so it passes whatever
//! `BUSBAR_TEST_DAEMON` says.)

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The names under `[dependencies]` in a Cargo.toml.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("read Cargo.toml");
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                out.push(name.trim().to_string());
            }
        }
    }
    out
}

/// All .rs text under `dir`.
fn sources(dir: &Path) -> String {
    let mut text = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read source dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                text.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    text
}

#[test]
fn every_dependency_is_used_and_documented() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Dependencies"))
        .expect("README has a Dependencies section");
    let mut checked = 0;
    for (manifest, src) in [("Cargo.toml", "src"), ("policy/Cargo.toml", "policy/src")] {
        let code = sources(&root().join(src));
        for dep in dependencies(&root().join(manifest)) {
            if dep == "policy" {
                continue; // the workspace's own crate
            }
            let krate = dep.replace('-', "_");
            assert!(
                code.contains(&format!("{krate}::")) || code.contains(&format!("use {krate}")),
                "{manifest} declares {dep}, but {src}/ never uses it"
            );
            assert!(
                section.contains(&format!("**{dep}**")),
                "{dep} ({manifest}) is not listed in the README's Dependencies section"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} dependencies found");
}
