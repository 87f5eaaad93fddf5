//! The runtime's source is in layers (the crate docs' "What is where"):
//! a module uses only modules of its own layer and those below, and no two
//! modules use each other, except a folder's modules with each other and
//! `cache` with `builder`. This test reads the layer list from the crate
//! docs and every `crate::` path in the source, and fails on a use
//! against the order, a circle, or a module in no layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module pairs that may use each other.
const ALLOWED_PAIRS: &[(&str, &str)] = &[("cache", "builder")];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layers, bottom first, from lines of the crate docs of the form
/// ``//! - **layer** (`a`, `b`, ...): what it holds``.
fn layers(lib: &str) -> Vec<(String, Vec<String>)> {
    lib.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("//! - **")?;
            let (name, rest) = rest.split_once("** (")?;
            let (modules, _) = rest.split_once("):")?;
            let modules = modules
                .split(',')
                .map(|m| m.trim().trim_matches('`').to_owned())
                .collect();
            Some((name.to_owned(), modules))
        })
        .collect()
}

/// What the crate root re-exports, by the name it is used under: `Cache`
/// is `cache`'s.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    map.insert("__private".into(), "private".into());
    map
}

/// Each `.rs` file under `dir`, with the top-level module it belongs to.
fn files(dir: &Path, top: Option<&str>, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            files(&path, Some(top.unwrap_or(&stem)), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = top.map_or(stem.clone(), str::to_owned);
            if module != "lib" {
                out.push((path, module));
            }
        }
    }
}

/// The first segment of every `crate::` path in `code` (comments left
/// out), with its line: `use crate::{a, b::c}` gives `a` and `b`.
fn uses(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // A group may span lines: read to its closing brace.
                let start = code.lines().take(n).map(|l| l.len() + 1).sum::<usize>()
                    + (line.len() - rest.len())
                    + 1;
                let mut depth = 1;
                let mut item = String::new();
                for c in code[start..].chars() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 1 => {
                            push_first(&item, n, &mut found);
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                    item.push(c);
                }
                push_first(&item, n, &mut found);
                let _ = group;
            } else {
                push_first(rest, n, &mut found);
            }
        }
    }
    found
}

fn push_first(path: &str, line: usize, found: &mut Vec<(usize, String)>) {
    let first: String = path
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !first.is_empty() && first != "self" {
        found.push((line + 1, first));
    }
}

#[test]
fn modules_use_only_their_layer_and_those_below_and_no_circle() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let layers = layers(&lib);
    assert!(
        layers.len() >= 5,
        "no layer list in the crate docs: {layers:?}"
    );
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, (_, modules))| modules.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let reexports = reexports(&lib);
    let mut all = Vec::new();
    files(&src(), None, &mut all);
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, module) in &all {
        let Some(&from) = layer_of.get(module.as_str()) else {
            problems.push(format!(
                "module `{module}` is in no layer of the crate docs"
            ));
            continue;
        };
        let code = std::fs::read_to_string(path).unwrap();
        for (line, used) in uses(&code) {
            let target = reexports.get(&used).cloned().unwrap_or(used);
            if target == *module {
                continue;
            }
            let Some(&to) = layer_of.get(target.as_str()) else {
                problems.push(format!(
                    "{}:{line}: `crate::{target}` is in no layer",
                    path.display()
                ));
                continue;
            };
            if to > from {
                problems.push(format!(
                    "{}:{line}: `{module}` ({}) uses `{target}` ({}), a layer above it",
                    path.display(),
                    layers[from].0,
                    layers[to].0
                ));
            }
            edges.entry(module.clone()).or_default().insert(target);
        }
    }
    for (a, targets) in &edges {
        for b in targets {
            let allowed = ALLOWED_PAIRS
                .iter()
                .any(|&(x, y)| (a == x && b == y) || (a == y && b == x));
            if a < b && !allowed && edges.get(b).is_some_and(|t| t.contains(a)) {
                problems.push(format!("`{a}` and `{b}` use each other"));
            }
        }
    }
    // Longer circles: a module that reaches itself through others.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                let pair_allowed = ALLOWED_PAIRS
                    .iter()
                    .any(|&(x, y)| (at == x && next == y) || (at == y && next == x));
                if pair_allowed {
                    continue;
                }
                if next == start && trail.len() > 2 {
                    problems.push(format!("a circle: {} -> {start}", trail.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut trail = trail.clone();
                    trail.push(next.clone());
                    stack.push((next.clone(), trail));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_reader_finds_grouped_and_nested_paths() {
    let code = "use crate::{a, b::{c, d}, e::F};\nfn f() { crate::g::h(); } // crate::comment\n";
    let found: Vec<String> = uses(code).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["a", "b", "e", "g"]);
}
