//! lb's modules form layers, and every `crate::` path in `src/` points down: a module uses only
//! modules below it, never one above or beside it, so there are no import circles and each
//! module can be read without opening those above. The order is the one the README's layout
//! section draws; a new module goes into [`LAYERS`] where its imports put it.

use std::path::{Path, PathBuf};

/// Bottom first. `pool::backend` and `pool::config` sit below `selection`, which the live
/// `Pool` (the rest of `pool`) is built on.
const LAYERS: &[&str] = &[
    "timer",
    "retry",
    "forwarded",
    "metrics",
    "request_id",
    "pool::config",
    "pool::backend",
    "selection",
    "pool",
    "routing",
    "store",
    "upstream",
    "body",
    "response",
    "request",
    "access_log",
    "conn",
    "health",
    "redirect",
    "proxy",
    "data_plane",
    "control",
    "admin",
    "daemon",
];

/// The layer a file belongs to: its top-level module, or `pool::backend`/`pool::config`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?.with_extension("");
    let parts: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    match parts.as_slice() {
        [single] if single == "lib" || single == "main" => None,
        [pool, sub, ..] if pool == "pool" && (sub == "backend" || sub == "config") => Some(format!("pool::{sub}")),
        [top, ..] => Some(top.clone()),
        [] => None,
    }
}

/// The layer a path after `crate::` (or a `pool` file's `super::`) names.
fn layer_named(path: &str) -> String {
    let mut segments = path.split("::");
    let top = segments.next().unwrap_or_default();
    match (top, segments.next()) {
        ("pool", Some(sub @ ("backend" | "config"))) => format!("pool::{sub}"),
        _ => top.to_owned(),
    }
}

/// Every module path a file's non-test code names with `crate::`, with its line number.
fn references(text: &str, in_pool: bool) -> Vec<(usize, String)> {
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            found.push((n + 1, layer_named(path_prefix(rest))));
        }
        if in_pool {
            if let Some(i) = line.find("super::") {
                found.push((n + 1, layer_named(&format!("pool::{}", path_prefix(&line[i + "super::".len()..])))));
            }
        }
    }
    found
}

/// The leading `a::b` of `rest`, up to the first character that is not part of a path.
fn path_prefix(rest: &str) -> &str {
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
    &rest[..end]
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        let Some(own) = rank(&module) else {
            wrong.push(format!("{}: module {module} has no place in LAYERS", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, used) in references(&text, module.starts_with("pool")) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => {
                    wrong.push(format!("{}:{line}: {module} uses {used}, which is not below it", file.display()))
                }
                None => wrong.push(format!("{}:{line}: {module} uses unknown module {used}", file.display())),
            }
        }
    }
    assert!(files.len() > 20, "found only {} files under {}", files.len(), src.display());
    assert!(wrong.is_empty(), "imports that do not point down:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    let found = references("use crate::proxy::Proxy;\nfn f() { crate::pool::backend::Backend::new(); }\n", false);
    assert_eq!(found, [(1, "proxy".to_owned()), (2, "pool::backend".to_owned())]);
    let in_pool = references("use super::config::Mode;\n#[cfg(test)]\nuse crate::admin;\n", true);
    assert_eq!(in_pool, [(1, "pool::config".to_owned())], "test code is not checked");
}
