//! The repository's own rules, checked on every run: imports flow one way through the stages,
//! no source file grows past 700 lines outside its tests, and every Markdown file the repository
//! names is in the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stages in the order data flows (lib.rs's map): a module may import only the ones before it.
const STAGES: &[&str] = &[
    "sys", "sources", "otlp", "export", "logging", "config", "state", "serve", "control",
    "runtime", "check", "top", "cli",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its trailing `mod tests` and without comments.
fn code(text: &str) -> String {
    let mut cut = text.len();
    for marker in ["\n#[cfg(test)]\nmod tests", "\nmod tests {"] {
        if let Some(i) = text.find(marker) {
            cut = cut.min(i);
        }
    }
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths a file names after `crate::` (use-groups expanded one level), and the
/// modules it names through `super::x::`.
fn references(code: &str) -> (BTreeSet<Vec<String>>, BTreeSet<String>) {
    let mut paths = BTreeSet::new();
    let mut supers = BTreeSet::new();
    // `a::b::c(…` → [a, b, c]: identifiers joined by `::`, up to the first other character.
    let segments = |mut s: &str| -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let id: String = s.chars().take_while(|c| is_ident(*c)).collect();
            if id.is_empty() {
                return out;
            }
            s = &s[id.len()..];
            out.push(id);
            match s.strip_prefix("::") {
                Some(rest) => s = rest,
                None => return out,
            }
        }
    };
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].ends_with(|c: char| is_ident(c)) {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        let head = segments(rest);
        // `crate::a::b::{c, d::e}` names a::b::c and a::b::d too.
        let consumed: usize = head.iter().map(|s| s.len() + 2).sum();
        if rest.get(consumed..).is_some_and(|r| r.starts_with('{')) {
            let group = &rest[consumed + 1
                ..rest[consumed..]
                    .find('}')
                    .map_or(rest.len(), |e| consumed + e)];
            for item in group.split(',') {
                let mut p = head.clone();
                p.extend(segments(item.trim()));
                paths.insert(p);
            }
        }
        paths.insert(head);
    }
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code[..i].ends_with(|c: char| is_ident(c)) {
            continue;
        }
        let rest = &code[i + "super::".len()..];
        let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
        if rest[name.len()..].starts_with("::") && name.chars().all(|c| !c.is_uppercase()) {
            supers.insert(name);
        }
    }
    (paths, supers)
}

fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Every pair of nodes that reach each other, grouped: small graphs, a plain reachability walk.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in edges.keys() {
        if out.iter().any(|c| c.contains(n)) {
            continue;
        }
        let from_n = reach(n);
        if !from_n.contains(n) {
            continue;
        }
        let comp: Vec<String> = from_n
            .iter()
            .filter(|m| reach(m).contains(n))
            .cloned()
            .collect();
        out.push(comp);
    }
    out
}

#[test]
fn imports_flow_one_way_and_have_no_cycles() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut children: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &files {
        let rel: Vec<String> = f
            .strip_prefix(&src)
            .unwrap()
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if matches!(rel[0].as_str(), "lib" | "main" | "bin") {
            continue;
        }
        let (paths, supers) = references(&code(&std::fs::read_to_string(f).unwrap()));
        let m = rel[0].clone();
        let e = top.entry(m.clone()).or_default();
        e.extend(paths.iter().map(|p| p[0].clone()).filter(|t| *t != m));
        if rel.len() >= 2 && rel[1] != "mod" {
            let child = rel[1].clone();
            let mut sib: BTreeSet<String> = paths
                .iter()
                .filter(|p| p.len() > 2 && p[0] == m)
                .map(|p| p[1].clone())
                .collect();
            if rel.len() == 2 {
                sib.extend(supers);
            }
            sib.remove(&child);
            children
                .entry(m.clone())
                .or_default()
                .entry(child)
                .or_default()
                .extend(sib);
        }
    }
    let mut problems = Vec::new();
    for (m, deps) in &top {
        let Some(rank) = STAGES.iter().position(|s| s == m) else {
            problems.push(format!("top-level module `{m}` is not in the stage list"));
            continue;
        };
        for d in deps {
            match STAGES.iter().position(|s| s == d) {
                Some(r) if r < rank => {}
                Some(_) => problems.push(format!("`{m}` imports `{d}`, a later stage")),
                None => {}
            }
        }
    }
    for c in cycles(&top) {
        problems.push(format!("cycle between top-level modules {c:?}"));
    }
    for (m, kids) in &children {
        let names: BTreeSet<String> = kids.keys().cloned().collect();
        let edges: BTreeMap<String, BTreeSet<String>> = kids
            .iter()
            .map(|(k, v)| (k.clone(), v.intersection(&names).cloned().collect()))
            .collect();
        for c in cycles(&edges) {
            problems.push(format!("cycle inside `{m}`: {c:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check must see the real graph: the known edges are there.
    assert!(top["runtime"].contains("state") && top["otlp"].contains("sources"));
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    e.entry("a".into()).or_default().insert("b".into());
    e.entry("b".into()).or_default().insert("c".into());
    e.entry("c".into()).or_default().insert("a".into());
    e.entry("d".into()).or_default().insert("a".into());
    assert_eq!(
        cycles(&e),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
    let (paths, supers) = references(&code(
        "use crate::x::{y::Z, w};\nfn f() { crate::q::r(); super::s::t(); }\n// crate::comment::x\n",
    ));
    let got: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert!(
        got.contains(&"x::y::Z".into()) && got.contains(&"x::w".into()),
        "{got:?}"
    );
    assert!(got.contains(&"q::r".into()) && !got.iter().any(|p| p.starts_with("comment")));
    assert_eq!(supers.into_iter().collect::<Vec<_>>(), ["s"]);
}

#[test]
fn no_source_file_over_700_lines_outside_its_tests() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut long = Vec::new();
    for f in files {
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Generated code (prost-build's output starts with a `@generated` marker) is regenerated,
        // never edited, so its length is not a design choice.
        if text
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("//") && l.contains("@generated"))
        {
            continue;
        }
        let body = text
            .find("\n#[cfg(test)]\nmod tests")
            .map_or(text.as_str(), |i| &text[..i]);
        let n = body.lines().count();
        if n > 700 {
            long.push(format!("{} ({n} lines)", f.display()));
        }
    }
    assert!(long.is_empty(), "split these files: {long:?}");
}

/// The repository's tracked files (what a clone has).
fn tracked() -> Vec<String> {
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_markdown_file_named_in_the_repo_is_in_the_repo() {
    let files = tracked();
    let have: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let names: BTreeSet<&str> = files.iter().filter_map(|f| f.rsplit('/').next()).collect();
    let mut missing = Vec::new();
    for f in &files {
        let path = root().join(f);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // binary
        };
        let dir = Path::new(f).parent().unwrap_or(Path::new(""));
        for token in text.split(|c: char| c.is_whitespace() || "`'\"()[]<>{},;:*|".contains(c)) {
            let Some(end) = token.find(".md") else {
                continue;
            };
            let name = &token[..end + 3];
            if name == ".md"
                || token[end + 3..].starts_with(|c: char| c.is_ascii_alphanumeric())
                || name.starts_with("*")
                || text.contains(&format!("://{name}"))
                || token.contains("//")
                // Build outputs (the benchmark's generated table) and absolute paths on a
                // machine, not repository files.
                || name.starts_with("target/")
                || name.starts_with('/')
            {
                continue;
            }
            let name = name.split('#').next().unwrap_or(name);
            let found = if name.contains('/') {
                let rel = dir.join(name);
                let norm = normalize(&rel);
                have.contains(norm.as_str()) || have.contains(name.trim_start_matches("./"))
            } else {
                names.contains(name)
            };
            if !found {
                missing.push(format!("{f}: {name}"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "named but not in the repo:\n{}",
        missing.join("\n")
    );
}

/// `a/b/../c` → `a/c`.
fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

#[test]
fn readme_is_short_and_shows_run_and_the_test_command_early() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    assert!(lines.len() < 300, "README.md has {} lines", lines.len());
    let head = lines[..lines.len().min(80)].join("\n");
    assert!(
        head.contains("node-agent run"),
        "no `node-agent run` in the first 80 lines"
    );
    assert!(
        head.contains("scripts/test.sh"),
        "no test command in the first 80 lines"
    );
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let files = tracked();
    let have: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let mut missing = Vec::new();
    for f in files.iter().filter(|f| f.ends_with(".md")) {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        for token in text.split(|c: char| c.is_whitespace() || "`'\"()[]<>,;*|".contains(c)) {
            let token = token.trim_end_matches(['.', ':']);
            let token = token.split('#').next().unwrap_or(token);
            if !(token.starts_with("src/")
                || token.starts_with("tests/")
                || token.starts_with("scripts/"))
                || token.contains(['{', '$', '<', '*'])
            {
                continue;
            }
            let t = token.trim_end_matches('/');
            if !have.contains(t) && !have.iter().any(|h| h.starts_with(&format!("{t}/"))) {
                missing.push(format!("{f}: {token}"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "paths named in docs but not in the repo:\n{}",
        missing.join("\n")
    );
}
