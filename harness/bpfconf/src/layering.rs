//! No import circles: within every folder of each harness crate's `src/` (the root included), its modules
//! (a file, or a sub-folder taken whole) depend on each other without a cycle. A module depends
//! on another when it names it in a `use` or a `crate::`/`super::`/`self::` path. A folder's
//! `mod.rs` holds what its files share and may use them, and they it: that pair is not counted.
//! Test code counts too. The layers this keeps are listed in `main.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use regex::Regex;

/// A module's path from the crate's root (`["report", "html"]`; the root is empty).
type ModPath = Vec<String>;

/// Every module file under `src`, by module path.
fn modules(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut parts: ModPath = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "main")) {
                parts.pop();
            }
            found.insert(parts, path);
        }
    }
    found
}

/// `text` without comments, string and character literals (a path in those names nothing).
fn code(text: &str) -> String {
    let literals = Regex::new(
        r##"(?s)//[^\n]*|/\*.*?\*/|\br#+".*?"#+|\br"[^"]*"|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])'"##,
    )
    .unwrap();
    literals.replace_all(text, " ").into_owned()
}

/// The paths of a `use` tree (`crate::{a, b::{c, d}}` → `crate::a`, `crate::b::c`, `crate::b::d`).
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// The module `path` names from module `from`, if it is one of ours.
fn resolve(from: &ModPath, path: &str, known: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut segments = path
        .split("::")
        .map(|s| s.split(" as ").next().unwrap_or(s));
    let mut at: ModPath = match segments.next()? {
        "crate" => Vec::new(),
        "self" => from.clone(),
        "super" => from[..from.len().checked_sub(1)?].to_vec(),
        child => {
            let mut at = from.clone();
            at.push(child.to_owned());
            if !known.contains(&at) {
                return None;
            }
            at
        }
    };
    for segment in segments {
        if segment == "super" {
            at.pop();
            continue;
        }
        let mut next = at.clone();
        next.push(segment.to_owned());
        if !known.contains(&next) {
            break;
        }
        at = next;
    }
    Some(at)
}

/// Which modules each module names.
fn dependencies(src: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let files = modules(src);
    let known: BTreeSet<ModPath> = files.keys().cloned().collect();
    let uses = Regex::new(r"\buse\s+([^;]+);").unwrap();
    let paths = Regex::new(r"\b(?:crate|super|self)(?:::\w+)+").unwrap();
    files
        .iter()
        .map(|(module, file)| {
            let text = code(&fs::read_to_string(file).unwrap());
            let named = uses
                .captures_iter(&text)
                .flat_map(|c| expand(&c[1]))
                .chain(paths.find_iter(&text).map(|m| m.as_str().to_owned()));
            let deps = named
                .filter_map(|p| resolve(module, &p, &known))
                .filter(|d| d != module)
                .collect();
            (module.clone(), deps)
        })
        .collect()
}

/// Each cycle among the children of a folder, as `folder: a -> b -> a`.
fn cycles(deps: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<String> {
    let folders: BTreeSet<ModPath> = deps
        .keys()
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect();
    let mut found = Vec::new();
    for folder in folders {
        // The child of `folder` that holds `m`, if `m` is below it and not it.
        let child = |m: &ModPath| {
            (m.len() > folder.len() && m.starts_with(&folder)).then(|| m[folder.len()].clone())
        };
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, tos) in deps {
            let Some(a) = child(from) else { continue };
            for to in tos {
                if let Some(b) = child(to).filter(|b| *b != a) {
                    graph.entry(a.clone()).or_default().insert(b);
                }
            }
        }
        let name = if folder.is_empty() {
            "src".to_owned()
        } else {
            folder.join("/")
        };
        found.extend(
            graph_cycles(&graph)
                .into_iter()
                .map(|c| format!("{name}: {}", c.join(" -> "))),
        );
    }
    found
}

/// One cycle through each strongly connected set of nodes (depth-first search).
fn graph_cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            found.push(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, found);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

/// Every crate of `harness/`, this one included.
#[test]
fn no_module_imports_its_way_back_to_itself() {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut crates: Vec<PathBuf> = fs::read_dir(harness)
        .unwrap()
        .map(|entry| entry.unwrap().path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    crates.sort();
    assert!(
        crates.len() >= 6,
        "the crates of {}: {crates:?}",
        harness.display()
    );
    let cycles: Vec<String> = (crates.iter())
        .flat_map(|src| {
            let name = src.parent().unwrap().file_name().unwrap().to_string_lossy();
            cycles(&dependencies(src))
                .into_iter()
                .map(move |c| format!("{name}/{c}"))
        })
        .collect();
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
}

#[test]
fn the_check_sees_what_it_checks() {
    let known: BTreeSet<ModPath> = [
        vec![],
        vec!["a".into()],
        vec!["a".into(), "b".into()],
        vec!["c".into()],
    ]
    .into_iter()
    .collect();
    let from: ModPath = vec!["a".into(), "b".into()];
    assert_eq!(
        expand("crate::{c::{X, Y}, a}"),
        ["crate::c::X", "crate::c::Y", "crate::a"]
    );
    assert_eq!(
        resolve(&from, "super::super::c::X", &known),
        Some(vec!["c".into()])
    );
    assert_eq!(resolve(&from, "crate::a::b::f", &known), Some(from.clone()));
    assert_eq!(resolve(&vec![], "a::b", &known), Some(from.clone()));
    assert_eq!(resolve(&from, "serde::Serialize", &known), None);
    assert_eq!(
        code("a // crate::x\n\"crate::y\" '\"' crate::z"),
        "a  \n    crate::z"
    );
    let deps: BTreeMap<ModPath, BTreeSet<ModPath>> = [
        (
            vec!["a".into(), "b".into()],
            BTreeSet::from([vec!["c".into()]]),
        ),
        (vec!["c".into()], BTreeSet::from([vec!["a".into()]])),
        (
            vec!["a".into()],
            BTreeSet::from([vec!["a".into(), "b".into()]]),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(cycles(&deps), ["src: a -> c -> a"]);
}
