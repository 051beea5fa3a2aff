//! No crate of the workspace has an import loop between its top-level modules: every module
//! can be read knowing only the modules below it. A module's dependencies are the modules it
//! names through `crate::` outside comments and unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments and without its `#[cfg(test)] mod tests` block.
fn code(source: &str) -> String {
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `code` names: `crate::a::…`, and each `a` in `use crate::{a, b::c}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        names.insert(ident_at(&group[i..]).to_string());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident_at(rest).to_string());
        }
    }
    names
}

/// Each top-level module of the crate at `dir` and the modules of the same crate it names.
fn module_graph(dir: &Path) -> Graph {
    let src = dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |file: &Path| -> Option<String> {
        let rel = file.strip_prefix(&src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let name = first.strip_suffix(".rs").unwrap_or(first);
        // The crate root and separate binaries are not modules of the library.
        (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_string())
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let source = fs::read_to_string(file).expect("readable source file");
        let uses = graph.entry(module.clone()).or_default();
        for named in named_modules(&code(&source)) {
            if named != module && modules.contains(&named) {
                uses.insert(named);
            }
        }
    }
    graph
}

/// A path of modules that leads from one module back to itself, if there is one.
fn find_loop(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_loop() {
    let root = workspace();
    let mut crates = 0;
    let mut loops = Vec::new();
    for entry in fs::read_dir(&root).expect("readable workspace") {
        let dir = entry.expect("directory entry").path();
        if !dir.join("Cargo.toml").is_file() || !dir.join("src").is_dir() {
            continue;
        }
        crates += 1;
        if let Some(cycle) = find_loop(&module_graph(&dir)) {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            loops.push(format!("{name}: {}", cycle.join(" -> ")));
        }
    }
    assert!(crates >= 10, "found only {crates} crates under {root:?}");
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

#[test]
fn the_loop_finder_finds_a_loop_and_passes_a_tree() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (from, to) in edges {
            g.entry(from.to_string())
                .or_default()
                .insert(to.to_string());
            g.entry(to.to_string()).or_default();
        }
        g
    };
    let tree = graph(&[("a", "b"), ("a", "c"), ("b", "c")]);
    assert_eq!(find_loop(&tree), None);
    let looped = graph(&[("a", "b"), ("b", "c"), ("c", "a")]);
    assert_eq!(
        find_loop(&looped),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn modules_are_read_from_paths_and_use_groups_but_not_comments_or_tests() {
    let source = "use crate::a::X;\nuse crate::{b, c::{D, E}, f::G};\n\
                  // crate::commented\nfn g() { crate::h::i(); }\n\
                  #[cfg(test)]\nmod tests { use crate::tested; }\n";
    let names = named_modules(&code(source));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(names, ["a", "b", "c", "f", "h"]);
}
