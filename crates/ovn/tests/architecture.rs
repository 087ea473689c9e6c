//! Two rules of the workspace's shape, checked on its sources:
//!
//! 1. **One gateway for Northbound writes.** Only `ovn::owned` (and the
//!    protocol crate `ovsdb` itself) builds write operations (`TxnBuilder`,
//!    insert/update/mutate/delete operations, mutations). The agent's
//!    modules writing the node's own Open_vSwitch database are the one
//!    exception, and they must not name the Northbound database.
//! 2. **Modules form a tree.** No module imports a module that imports it
//!    back, directly or through others (`use crate::…`, `super::…`,
//!    `self::…` and paths to a child module all count; declaring a child
//!    with `mod` does not).
//!
//! Test code (after the first `#[cfg(test)]` of a file) is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The product code of a file: everything before its tests, without
/// comments.
fn product_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn crates() -> Vec<PathBuf> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(workspace().join("crates"))
        .expect("crates/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    crates.sort();
    crates
}

const WRITE_OPERATIONS: [&str; 7] = [
    "TxnBuilder",
    "Operation::Insert",
    "Operation::Update",
    "Operation::Mutate",
    "Operation::Delete",
    "Mutation::",
    "Mutation {",
];

#[test]
fn only_the_gateway_builds_northbound_writes() {
    let root = workspace().join("crates");
    // Writes to the node's own Open_vSwitch database, never to Northbound.
    let vswitch_writers = ["agent/src/ovs.rs", "agent/src/chassis.rs"];
    let mut offenders = Vec::new();
    for krate in crates() {
        if krate.ends_with("ovsdb") || krate.ends_with("testenv") {
            continue; // the protocol itself; test daemons and raw benchmark writers
        }
        for file in rust_files(&krate.join("src")) {
            let relative = file.strip_prefix(&root).expect("under crates/");
            let relative = relative.to_string_lossy().replace('\\', "/");
            if relative.starts_with("ovn/src/owned/") {
                continue;
            }
            let code = product_code(&file);
            let writes: Vec<&str> = WRITE_OPERATIONS
                .into_iter()
                .filter(|op| code.contains(op))
                .collect();
            if vswitch_writers.contains(&relative.as_str()) {
                assert!(
                    !code.contains("nb::") && !code.contains("OVN_Northbound"),
                    "{relative} writes the Open_vSwitch database and must not name Northbound"
                );
            } else if !writes.is_empty() {
                offenders.push(format!("{relative}: {}", writes.join(", ")));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "Northbound writes are built only by ovn::owned; found:\n{}",
        offenders.join("\n")
    );
}

/// A crate's modules: module path (`a::b`) → file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut modules = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src/");
        let mut parts: Vec<String> = relative
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts.first().is_some_and(|p| p == "bin") {
            continue; // separate binaries
        }
        let path = match parts.as_slice() {
            [root] if root == "lib" || root == "main" => String::new(),
            _ => parts.join("::"),
        };
        // A crate with both roots: the library is the tree; `main` only
        // uses it by the crate's name.
        if path.is_empty() && modules.contains_key("") {
            continue;
        }
        modules.insert(path, file);
    }
    modules
}

fn join(module: &str, child: &str) -> String {
    if module.is_empty() {
        child.to_string()
    } else {
        format!("{module}::{child}")
    }
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// The modules `code` (of module `module`) refers to: through `crate::`,
/// `super::`, `self::`, or a child's name at the start of a `use`.
fn references(module: &str, code: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let resolve = |base: String, rest: &str, found: &mut BTreeSet<String>| -> bool {
        // The longest known module along `base::rest`.
        let mut current = base;
        let mut best = None;
        for segment in rest.split("::") {
            let segment: String = segment
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if segment.is_empty() {
                break;
            }
            current = join(&current, &segment);
            if known.contains_key(&current) {
                best = Some(current.clone());
            } else {
                break;
            }
        }
        match best {
            Some(target) => {
                found.insert(target);
                true
            }
            None => false,
        }
    };
    let tokens: Vec<(usize, &str)> = code.match_indices("crate::").collect();
    for (at, _) in tokens {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `$crate::`
        }
        resolve(String::new(), &code[at + "crate::".len()..], &mut found);
    }
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("super::") {
            continue; // counted from the first `super::`
        }
        let mut base = parent(module);
        let mut rest = &code[at + "super::".len()..];
        while let Some(more) = rest.strip_prefix("super::") {
            base = parent(&base);
            rest = more;
        }
        // `super::X` names the parent itself when X is not a module.
        if !resolve(base.clone(), rest, &mut found) {
            found.insert(base);
        }
    }
    for (at, _) in code.match_indices("self::") {
        if code[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        resolve(module.to_string(), &code[at + "self::".len()..], &mut found);
    }
    for line in code.lines() {
        let line = line.trim_start();
        let rest = line
            .strip_prefix("pub use ")
            .or_else(|| line.strip_prefix("pub(crate) use "))
            .or_else(|| line.strip_prefix("use "));
        if let Some(rest) = rest {
            resolve(module.to_string(), rest, &mut found);
        }
    }
    found.remove(module);
    found
}

/// The cycles of `edges` (each as the modules on it).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's strongly connected components; a component of more than one
    // module holds a cycle.
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[w].min(s.low[v]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.index[w].min(s.low[v]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.components.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.components
}

#[test]
fn modules_form_a_tree() {
    let mut problems = Vec::new();
    for krate in crates() {
        let known = modules(&krate.join("src"));
        let edges: BTreeMap<String, BTreeSet<String>> = known
            .iter()
            .map(|(module, file)| {
                (
                    module.clone(),
                    references(module, &product_code(file), &known),
                )
            })
            .collect();
        for cycle in cycles(&edges) {
            let name = krate.file_name().unwrap_or_default().to_string_lossy();
            let shown: Vec<String> = cycle
                .iter()
                .map(|m| {
                    if m.is_empty() {
                        "crate".to_string()
                    } else {
                        m.clone()
                    }
                })
                .collect();
            problems.push(format!("{name}: {}", shown.join(" <-> ")));
        }
    }
    assert!(
        problems.is_empty(),
        "module import cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_check_finds_cycles() {
    let known: BTreeMap<String, PathBuf> = ["", "a", "b", "a::c"]
        .iter()
        .map(|m| (m.to_string(), PathBuf::new()))
        .collect();
    assert_eq!(
        references("a::c", "use super::Thing;", &known),
        BTreeSet::from(["a".to_string()])
    );
    assert_eq!(
        references("a", "pub use c::Thing;\nfn f() { crate::b::g() }", &known),
        BTreeSet::from(["a::c".to_string(), "b".to_string()])
    );
    let edges = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["a::c".to_string()])),
        ("a::c".to_string(), BTreeSet::from(["a".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(cycles(&edges), [["a", "a::c"]]);
}
