//! The layout holds: no import cycles between source files, and no source file over 1,000
//! lines except those listed with the reason. Read from the files themselves (their `use`
//! lines and the paths in their code), so that a change that breaks the layering fails here.
//!
//! A module's root file (`mod.rs`, `lib.rs`, or `x.rs` for the files in `x/`) is the
//! module's face: the files of the module (its children, at any depth) may use what it
//! defines, as Rust's privacy intends, and that is not counted as an import. Everything else must point one way: from a file to files
//! that never point back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates of the workspace: source folder and the name other crates use for it.
const CRATES: &[(&str, &str)] = &[
    ("src", "tenure"),
    ("udfs/src", "tenure_udfs"),
    ("models/src", "tenure_models"),
    ("demo/src", "tenure_demo"),
];

/// Files allowed past 1,000 lines, and why.
const LONG_FILES: &[(&str, &str)] = &[(
    "tests/server.rs",
    "the wire tests with each real client, one scenario after another; split by client it \
     would repeat the server set-up in each file",
)];

const MAX_LINES: usize = 1000;

fn root() -> PathBuf {
    crate::support::project_file("")
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// One source file: its crate and module path (`["engine", "statements"]`).
struct File {
    krate: &'static str,
    module: Vec<String>,
}

fn module_of(crate_dir: &Path, path: &Path) -> Vec<String> {
    let relative = path.strip_prefix(crate_dir).expect("file in its crate");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The text that counts: without comments and without an inline unit-test module, whose
/// imports are the tests' business. The module runs from `#[cfg(test)] mod tests {` to the
/// first `}` at the start of a line after it (rustfmt indents everything inside).
fn code_of(text: &str) -> String {
    let mut in_tests = false;
    let mut lines = Vec::new();
    let mut previous = "";
    for line in text.lines() {
        if previous == "#[cfg(test)]" && line == "mod tests {" {
            in_tests = true;
        }
        let counted = !in_tests && !line.trim_start().starts_with("//");
        lines.push(if counted { line } else { "" });
        if in_tests && line == "}" {
            in_tests = false;
        }
        previous = line;
    }
    lines.join("\n")
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path written in `code` that starts with one of `heads`, as segments (`crate::a::b`
/// -> ["crate", "a", "b"]); `use x::{a, b::c}` gives one path per item.
fn paths(code: &str, heads: &[&str]) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !is_ident_char(chars[i - 1]) && chars[i - 1] != ':';
        if starts_word && is_ident_char(chars[i]) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if heads.contains(&word.as_str()) && chars.get(i..i + 2) == Some(&[':', ':'][..]) {
                let mut prefix = vec![word];
                read_path(&chars, &mut i, &mut prefix, &mut found);
            }
        } else {
            i += 1;
        }
    }
    found
}

/// Reads `::seg::seg...` or `::{...}` after `prefix`, at `chars[*i]`.
fn read_path(
    chars: &[char],
    i: &mut usize,
    prefix: &mut Vec<String>,
    found: &mut Vec<Vec<String>>,
) {
    while chars.get(*i..*i + 2) == Some(&[':', ':'][..]) {
        *i += 2;
        if chars.get(*i) == Some(&'{') {
            *i += 1;
            loop {
                while chars
                    .get(*i)
                    .is_some_and(|c| c.is_whitespace() || *c == ',')
                {
                    *i += 1;
                }
                match chars.get(*i) {
                    None => return,
                    Some('}') => {
                        *i += 1;
                        return;
                    }
                    Some(_) => {}
                }
                let start = *i;
                while chars.get(*i).is_some_and(|c| is_ident_char(*c)) {
                    *i += 1;
                }
                if *i == start {
                    // `*` or something unexpected: skip it.
                    *i += 1;
                    continue;
                }
                let mut item = prefix.clone();
                item.push(chars[start..*i].iter().collect());
                read_path(chars, i, &mut item, found);
                // `as alias`
                while chars.get(*i).is_some_and(|c| *c != ',' && *c != '}') {
                    *i += 1;
                }
            }
        }
        let start = *i;
        while chars.get(*i).is_some_and(|c| is_ident_char(*c)) {
            *i += 1;
        }
        if *i == start {
            break;
        }
        prefix.push(chars[start..*i].iter().collect());
    }
    found.push(prefix.clone());
}

/// Module names declared in `code` with `mod name;` or `mod name {`.
fn declared_modules(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line
                .strip_prefix("pub ")
                .or_else(|| line.strip_prefix("pub(crate) "))
                .or_else(|| line.strip_prefix("pub(super) "))
                .unwrap_or(line);
            let name = line.strip_prefix("mod ")?;
            Some(name.trim_end_matches([';', '{', ' ']).to_string())
        })
        .collect()
}

/// The file edges of the workspace, as (importing file, imported file).
fn imports() -> (Vec<PathBuf>, BTreeMap<usize, BTreeSet<usize>>) {
    let root = root();
    let mut files: Vec<(PathBuf, File)> = Vec::new();
    for (dir, krate) in CRATES {
        let crate_dir = root.join(dir);
        let mut paths = Vec::new();
        rust_files(&crate_dir, &mut paths);
        paths.sort();
        for path in paths {
            let module = module_of(&crate_dir, &path);
            files.push((path, File { krate, module }));
        }
    }
    let by_module: BTreeMap<(&str, &[String]), usize> = files
        .iter()
        .enumerate()
        .map(|(index, (_, f))| ((f.krate, f.module.as_slice()), index))
        .collect();
    // The file of the longest module prefix of `path` in `krate`.
    let resolve = |krate: &str, path: &[String]| -> Option<usize> {
        (1..=path.len())
            .rev()
            .find_map(|n| by_module.get(&(krate, &path[..n])).copied())
    };
    let crate_names: Vec<&str> = CRATES.iter().map(|(_, name)| *name).collect();
    let mut heads = vec!["crate", "super", "self"];
    heads.extend(&crate_names);
    let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (index, (path, file)) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).expect("readable source");
        let code = code_of(&text);
        let children = declared_modules(&code);
        let mut targets = BTreeSet::new();
        let mut local_heads = heads.clone();
        local_heads.extend(children.iter().map(String::as_str));
        for segments in paths(&code, &local_heads) {
            let (krate, absolute): (&str, Vec<String>) = match segments[0].as_str() {
                "crate" => (file.krate, segments[1..].to_vec()),
                "self" => (file.krate, [&file.module[..], &segments[1..]].concat()),
                "super" => {
                    let mut base = file.module.clone();
                    let mut rest = &segments[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    (file.krate, [&base[..], rest].concat())
                }
                name if crate_names.contains(&name) => {
                    let krate = CRATES.iter().find(|(_, n)| *n == name).unwrap().1;
                    (krate, segments[1..].to_vec())
                }
                // `child::item`, for a module this file declares.
                _ => (file.krate, [&file.module[..], &segments[..]].concat()),
            };
            let Some(target) = resolve(krate, &absolute) else {
                continue;
            };
            // The file of a module that contains this one (`mod.rs`, `lib.rs`, or `x.rs` for
            // the files in `x/`).
            let target_file = &files[target].1;
            let ancestor = target_file.krate == file.krate
                && target_file.module.len() < file.module.len()
                && file.module.starts_with(&target_file.module);
            if target != index && !ancestor {
                targets.insert(target);
            }
        }
        edges.insert(index, targets);
    }
    (files.into_iter().map(|(path, _)| path).collect(), edges)
}

/// The cycles of `edges`, each as the files on it (Tarjan's strongly connected components
/// of more than one file).
fn cycles(count: usize, edges: &BTreeMap<usize, BTreeSet<usize>>) -> Vec<Vec<usize>> {
    struct State<'a> {
        edges: &'a BTreeMap<usize, BTreeSet<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        let targets: Vec<usize> = s.edges.get(&v).into_iter().flatten().copied().collect();
        for w in targets {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(index) if s.on_stack[w] => s.low[v] = s.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().expect("on the stack");
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: vec![None; count],
        low: vec![0; count],
        stack: Vec::new(),
        on_stack: vec![false; count],
        next: 0,
        found: Vec::new(),
    };
    for v in 0..count {
        if state.index[v].is_none() {
            visit(&mut state, v);
        }
    }
    state.found
}

#[test]
fn no_import_cycles_between_files() {
    let (files, edges) = imports();
    assert!(files.len() > 50, "found only {} source files", files.len());
    // The check sees imports: the server's query handler uses the engine.
    let named = |suffix: &str| files.iter().position(|f| f.ends_with(suffix)).unwrap();
    assert!(
        edges[&named("src/server/query/run.rs")].contains(&named("src/engine/mod.rs")),
        "the import parser missed `use crate::engine::...`"
    );
    let root = root();
    let cycles: Vec<Vec<String>> = cycles(files.len(), &edges)
        .into_iter()
        .map(|c| {
            let mut names: Vec<String> = c
                .iter()
                .map(|&i| files[i].strip_prefix(&root).unwrap().display().to_string())
                .collect();
            names.sort();
            names
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "files that import each other: {cycles:#?}"
    );
}

#[test]
fn test_modules_are_left_out_and_what_follows_them_is_not() {
    let code = code_of(
        "use crate::a::B;\n#[cfg(test)]\nmod tests {\n    use crate::c::D;\n}\n\nfn f() { crate::e::g() }\n",
    );
    let found: Vec<String> = paths(&code, &["crate"])
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(found, ["crate::a::B", "crate::e::g"]);
}

#[test]
fn the_import_parser_reads_paths_and_groups() {
    let code =
        "use crate::a::{b, c::{d, e as f}};\nfn x() { super::super::g::h(); tenure_models::k::L }";
    let found = paths(code, &["crate", "super", "tenure_models"]);
    let as_text: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        as_text,
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "super::super::g::h",
            "tenure_models::k::L"
        ]
    );
    assert_eq!(
        declared_modules("mod a;\npub mod b;\npub(crate) mod c {\n"),
        BTreeSet::from(["a", "b", "c"].map(String::from))
    );
}

#[test]
fn source_files_stay_short() {
    let root = root();
    let mut sources = Vec::new();
    for dir in CRATES
        .iter()
        .map(|(dir, _)| *dir)
        .chain(["tests", "benches"])
    {
        rust_files(&root.join(dir), &mut sources);
    }
    let long: Vec<String> = sources
        .iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(path).ok()?.lines().count();
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            (lines > MAX_LINES && !LONG_FILES.iter().any(|(file, _)| *file == name))
                .then(|| format!("{name}: {lines} lines"))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}
