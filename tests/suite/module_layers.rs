//! The module graph has no cycle: for every top-level module of the crate (`src/<name>.rs` or `src/<name>/`), the
//! other top-level modules its code names (`crate::<name>`, in `use` lines and paths, `crate::{a, b}` groups
//! included; comments and string literals left out), and one level down the same between the files of a folder
//! module (`super::<sibling>` and `crate::<top>::<sibling>`, the emulator's included). A module that names one which
//! names it back, directly or around a longer loop, fails the test with the loop.
//!
//! `cargo test --test suite module_layers:: -- --nocapture` prints the layer graph, lowest layer first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeMap<String, usize>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `text` with comments and the contents of string and character literals blanked out (identifiers and paths
/// stay where they are).
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c[i] == 'r' && (next == Some('"') || next == Some('#')) && !ident_char_before(&c, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime ('a) left as it is.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c[i]);
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn ident_char_before(c: &[char], i: usize) -> bool {
    i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_')
}

/// Every path `prefix::…` in `code`, as its segments after the prefix (`crate::{a::b, c}` gives `[a, b]` and
/// `[c]`).
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let c: Vec<char> = code.chars().collect();
    let p: Vec<char> = prefix.chars().chain("::".chars()).collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i + p.len() <= c.len() {
        if c[i..i + p.len()] == p[..] && !ident_char_before(&c, i) && (i < 2 || c[i - 2..i] != [':', ':']) {
            let mut j = i + p.len();
            read_tree(&c, &mut j, Vec::new(), &mut found);
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

/// Reads a use tree (a path, or a `{…}` group of them) at `*j`, pushing each path below `base`.
fn read_tree(c: &[char], j: &mut usize, base: Vec<String>, found: &mut Vec<Vec<String>>) {
    let skip_ws = |j: &mut usize| {
        while *j < c.len() && c[*j].is_whitespace() {
            *j += 1;
        }
    };
    skip_ws(j);
    if c.get(*j) == Some(&'{') {
        *j += 1;
        loop {
            skip_ws(j);
            match c.get(*j) {
                None => return,
                Some('}') => {
                    *j += 1;
                    return;
                }
                Some(',') => *j += 1,
                Some(_) => {
                    let before = *j;
                    read_tree(c, j, base.clone(), found);
                    // Anything else (`self`, `*`, `as x`): step over it.
                    if *j == before {
                        *j += 1;
                    }
                    while *j < c.len() && !matches!(c[*j], ',' | '}') {
                        *j += 1;
                    }
                }
            }
        }
    }
    let mut path = base;
    loop {
        let start = *j;
        while *j < c.len() && (c[*j].is_alphanumeric() || c[*j] == '_') {
            *j += 1;
        }
        if *j == start {
            break;
        }
        path.push(c[start..*j].iter().collect());
        if c.get(*j) == Some(&':') && c.get(*j + 1) == Some(&':') {
            *j += 2;
            if c.get(*j) == Some(&'{') {
                read_tree(c, j, path, found);
                return;
            }
        } else {
            break;
        }
    }
    if !path.is_empty() {
        found.push(path);
    }
}

/// The module path of a file below `src/` (`sync/poller.rs` → `[sync, poller]`, `fs/gallery/mod.rs` →
/// `[fs, gallery]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// The top-level modules (`pub mod x;` / `mod x;` in `lib.rs`).
fn top_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("src/lib.rs");
    code_only(&lib)
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("pub ").trim_start_matches("pub(crate) ");
            l.strip_prefix("mod ")?.strip_suffix(';').map(|m| m.trim().to_string())
        })
        .collect()
}

struct Crate {
    /// (module path, code) per file of the library.
    files: Vec<(Vec<String>, String)>,
    tops: BTreeSet<String>,
}

fn read_crate() -> Crate {
    let src = src_dir();
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files = paths
        .iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).expect("below src");
            // `main.rs` is the binary's crate root: its `crate::` is another crate.
            if rel == Path::new("main.rs") || rel == Path::new("lib.rs") {
                return None;
            }
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            Some((module_path(rel), code_only(&text)))
        })
        .collect();
    Crate {
        files,
        tops: top_modules(),
    }
}

/// Top-level module → the other top-level modules it names, with how many times.
fn top_graph(k: &Crate) -> Graph {
    let mut g: Graph = k.tops.iter().map(|t| (t.clone(), BTreeMap::new())).collect();
    for (module, code) in &k.files {
        let from = &module[0];
        for path in paths_after(code, "crate") {
            let to = &path[0];
            if to != from && k.tops.contains(to) {
                *g.entry(from.clone()).or_default().entry(to.clone()).or_default() += 1;
            }
        }
    }
    g
}

/// Within the folder module `parent` (e.g. `[sync]`), each child module → the sibling children it names
/// (`super::x` from a child's own file, `crate::<parent>::x` anywhere in it).
fn sibling_graph(k: &Crate, parent: &[String]) -> Graph {
    let mut g = Graph::new();
    for (module, code) in &k.files {
        if module.len() <= parent.len() || module[..parent.len()] != *parent {
            continue;
        }
        let from = module[parent.len()].clone();
        g.entry(from.clone()).or_default();
        let mut targets: Vec<String> = Vec::new();
        let crate_prefix = format!("crate::{}", parent.join("::"));
        targets.extend(paths_after(code, &crate_prefix).into_iter().map(|p| p[0].clone()));
        if module.len() == parent.len() + 1 {
            // `super::` in the child's own file is the parent (in its inline `mod tests`, the child itself: those
            // name the child's items, which are not siblings, or siblings through the parent all the same).
            targets.extend(paths_after(code, "super").into_iter().map(|p| p[0].clone()));
        }
        for to in targets {
            if to != from && to != "super" {
                *g.entry(from.clone()).or_default().entry(to).or_default() += 1;
            }
        }
    }
    // Only edges between children of `parent`.
    let children: BTreeSet<String> = g.keys().cloned().collect();
    for deps in g.values_mut() {
        deps.retain(|to, _| children.contains(to));
    }
    g
}

/// A cycle of `g`, if it has one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(g: &Graph, n: &str, marks: &mut BTreeMap<String, Mark>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        marks.insert(n.to_string(), Mark::Open);
        stack.push(n.to_string());
        for to in g.get(n).into_iter().flat_map(|d| d.keys()) {
            match marks.get(to).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|s| s == to).expect("on the stack");
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(to.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(g, to, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in g.keys() {
        if marks.get(n).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(g, n, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The layers of an acyclic `g`, lowest first: each module's layer is one above the highest one it names.
fn layers(g: &Graph) -> Vec<Vec<String>> {
    fn depth(g: &Graph, n: &str, memo: &mut BTreeMap<String, usize>) -> usize {
        if let Some(d) = memo.get(n) {
            return *d;
        }
        let d = g
            .get(n)
            .into_iter()
            .flat_map(|d| d.keys())
            .map(|to| depth(g, to, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(n.to_string(), d);
        d
    }
    let mut memo = BTreeMap::new();
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in g.keys() {
        let d = depth(g, n, &mut memo);
        if out.len() <= d {
            out.resize(d + 1, Vec::new());
        }
        out[d].push(n.clone());
    }
    out
}

fn describe(g: &Graph) -> String {
    let mut s = String::new();
    for (from, deps) in g {
        let deps: Vec<String> = deps.iter().map(|(to, n)| format!("{to} ({n})")).collect();
        s.push_str(&format!(
            "  {from} -> {}\n",
            if deps.is_empty() { "-".into() } else { deps.join(", ") }
        ));
    }
    s
}

fn check(name: &str, g: &Graph) -> Result<(), String> {
    match find_cycle(g) {
        Some(cycle) => Err(format!(
            "{name}: cycle {}\n{name}: the graph (module -> the modules it names, with how many times):\n{}",
            cycle.join(" -> "),
            describe(g)
        )),
        None => {
            println!("{name}: no cycle; layers, lowest first:");
            for (i, layer) in layers(g).iter().enumerate() {
                println!("  {i}: {}", layer.join(", "));
            }
            println!("{name}: edges (module -> the modules it names, with how many times):");
            print!("{}", describe(g));
            Ok(())
        }
    }
}

#[test]
fn top_level_modules_form_no_cycle() {
    let k = read_crate();
    assert!(k.tops.len() > 5, "the top-level modules of src/lib.rs: {:?}", k.tops);
    let g = top_graph(&k);
    if let Err(e) = check("crate", &g) {
        panic!("{e}");
    }
}

#[test]
fn sibling_modules_form_no_cycle() {
    let k = read_crate();
    let folders: BTreeSet<Vec<String>> = k
        .files
        .iter()
        .filter(|(m, _)| m.len() >= 2)
        .map(|(m, _)| m[..m.len() - 1].to_vec())
        .collect();
    let mut failures = Vec::new();
    for folder in &folders {
        let g = sibling_graph(&k, folder);
        if g.values().all(|d| d.is_empty()) {
            continue;
        }
        if let Err(e) = check(&folder.join("::"), &g) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_scanner_sees_grouped_paths_and_skips_comments_and_strings() {
    let code = code_only(
        "use crate::{store::{Store, Tx}, remote::Endpoints};\n// crate::fuse::x\n/* crate::cli */\n\
         let s = \"crate::daemon\"; let r = r#\"crate::mount\"#; let c = '\"'; let l: &'a str;\n\
         fn f() { crate::sync::poller::run(); ::crate_x::y(); }",
    );
    let tops: Vec<String> = paths_after(&code, "crate").into_iter().map(|p| p[0].clone()).collect();
    assert_eq!(tops, ["store", "store", "remote", "sync"]);
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into(), 1);
    g.entry("b".into()).or_default().insert("c".into(), 1);
    g.entry("c".into()).or_default().insert("a".into(), 1);
    assert_eq!(find_cycle(&g).expect("a cycle"), ["a", "b", "c", "a"]);
    g.get_mut("c").unwrap().clear();
    assert!(find_cycle(&g).is_none());
    assert_eq!(layers(&g), [vec!["c".to_string()], vec!["b".into()], vec!["a".into()]]);
}
