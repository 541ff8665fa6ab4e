//! Imports between the top-level modules of each library crate (protocol, daemon, client) go one way,
//! down the layers ARCHITECTURE.md draws: no module imports another that imports it back, and a module
//! imports only modules on lower lines of its crate's `layers` block. The page cannot drift from the code:
//! every top-level module must be on it exactly once, and nothing else.
//!
//! A top-level module is a file `src/NAME.rs` or a folder `src/NAME/`. `lib.rs`, `main.rs` and `bin/`
//! assemble the crate and are not checked as importers. An import is a path through `crate::NAME`
//! (`use crate::NAME::x`, the heads of `use crate::{NAME, OTHER::{x, y}}`, or inline `crate::NAME::f()`),
//! a path out of a top-level file through `super::NAME`, or out of a folder through `super::super::`; in
//! a string too, since `#[serde(with = "crate::NAME")]` is a use. A name the crate root re-exports
//! (`crate::Client`, from `pub use client::Client;` in lib.rs) is an import of the module it comes from,
//! so the root is no way around the layers. Comments are not code, and an item under `#[cfg(test)]` (a
//! whole file under `#![cfg(test)]`) may import anything: tests reach across layers on purpose.
//!
//! A crate's block in ARCHITECTURE.md, the top layer first; modules of one layer share a line and may not
//! import each other; `#` starts a comment:
//!
//! ~~~text
//! ```layers
//! crate daemon
//! server            # the top: may import every module below it
//! connection
//! service manage    # one layer: neither may import the other
//! store
//! record clock      # the bottom: imports no module of its crate
//! ```
//! ~~~
//!
//! No module names are written here: the checks hold for whatever modules the crates grow. The checker
//! is tested on small crates of its own in temporary directories. It reads files only (no cargo, no
//! rustc), so it runs in well under a second.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The library crates whose imports are checked, by their directory under the workspace root.
const CRATES: &[&str] = &["protocol", "daemon", "client"];

/// The page that draws the layers, at the workspace root.
const ARCHITECTURE: &str = "ARCHITECTURE.md";

/// What a `layers` block looks like, for the failure messages.
const LAYERS_EXAMPLE: &str = "```layers
crate daemon
server            # the top: may import every module below it
connection
service manage    # one layer: neither may import the other
store
record clock      # the bottom: imports no module of its crate
```";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let cycles: Vec<String> =
        CRATES.iter().flat_map(|name| cycles(&read_crate(&workspace().join(name), name))).collect();
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules (under each, the lines that make its steps):\n{}\n\
         Break each one: move what the lower module takes from the higher one down into it, or below both.",
        cycles.join("\n")
    );
}

#[test]
fn each_module_imports_only_the_layers_below_it_in_architecture_md() {
    let path = workspace().join(ARCHITECTURE);
    let markdown = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{ARCHITECTURE} at the workspace root: {e}. It draws each crate's layers in a fenced block with the \
             info string `layers`, one per crate ({}), the top layer first, e.g.\n{LAYERS_EXAMPLE}",
            CRATES.join(", ")
        )
    });
    let (blocks, mut problems) = parse_layers(&markdown);
    for name in blocks.keys().filter(|name| !CRATES.contains(&name.as_str())) {
        problems.push(format!(
            "{ARCHITECTURE} has a `layers` block for crate {name}, which is not one of {}",
            CRATES.join(", ")
        ));
    }
    for name in CRATES {
        problems.extend(check_layers(&read_crate(&workspace().join(name), name), blocks.get(*name)));
    }
    assert!(
        problems.is_empty(),
        "imports against the layers of {ARCHITECTURE} (a module may import only modules on lower lines of its \
         crate's `layers` block):\n{}",
        problems.join("\n")
    );
}

/// One crate's top-level modules and the imports between them.
#[derive(Debug)]
struct CrateGraph {
    /// The crate's directory (`daemon`), which every message starts with.
    name: String,
    /// Each top-level module and where it is, from the workspace root (`daemon/src/config.rs`).
    modules: BTreeMap<String, String>,
    /// Importer → imported → the lines that import it (`daemon/src/config.rs:40`), in file order.
    imports: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl CrateGraph {
    fn imported_by(&self, module: &str) -> impl Iterator<Item = &str> {
        self.imports.get(module).into_iter().flat_map(|imported| imported.keys().map(String::as_str))
    }
}

/// Reads the crate in `dir` (its `src/`), named `name` in messages.
fn read_crate(dir: &Path, name: &str) -> CrateGraph {
    let src = dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut Vec::new(), &mut files);
    let is_root = |parts: &[String]| matches!(parts, [file] if file == "lib.rs" || file == "main.rs");
    let mut modules = BTreeMap::new();
    for parts in files.iter().filter(|parts| !is_root(parts)) {
        let (module, place) = match &parts[..] {
            [file] => (file.trim_end_matches(".rs"), format!("{name}/src/{file}")),
            [folder, ..] => (folder.as_str(), format!("{name}/src/{folder}/")),
            [] => unreachable!("a file has a name"),
        };
        modules.entry(module.to_owned()).or_insert(place);
    }
    let exports = match std::fs::read_to_string(src.join("lib.rs")) {
        Ok(text) => root_exports(&text, &modules),
        Err(_) => BTreeMap::new(),
    };
    let mut imports: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for parts in files.iter().filter(|parts| !is_root(parts)) {
        let path = src.join(parts.iter().collect::<PathBuf>());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let module_path = module_path(parts);
        let own = &module_path[0];
        for (line, imported) in file_imports(&text, &module_path, &modules, &exports) {
            if &imported != own {
                let place = format!("{name}/src/{}:{line}", parts.join("/"));
                imports.entry(own.clone()).or_default().entry(imported).or_default().push(place);
            }
        }
    }
    CrateGraph { name: name.to_owned(), modules, imports }
}

/// Every `.rs` file under `dir`, as path components below `src/`, in name order; `src/bin/` is left out
/// (each file there is a crate of its own).
fn rust_files(dir: &Path, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    let mut entries: Vec<_> = entries.map(|entry| entry.expect("a directory entry")).collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("a file type").is_dir() {
            if prefix.is_empty() && name == "bin" {
                continue;
            }
            prefix.push(name);
            rust_files(&entry.path(), prefix, out);
            prefix.pop();
        } else if name.ends_with(".rs") {
            out.push([&prefix[..], &[name]].concat());
        }
    }
}

/// The module a file is: `a.rs` is `[a]`, `a/mod.rs` is `[a]`, `a/b.rs` is `[a, b]`.
fn module_path(parts: &[String]) -> Vec<String> {
    let mut path = parts.to_vec();
    let last = path.pop().expect("a file name");
    match last.trim_end_matches(".rs") {
        "mod" => {}
        stem => path.push(stem.to_owned()),
    }
    path
}

/// The source of one file in two views of the same length, line for line: `code` with comments blanked
/// out, and `shape` with string and character literals blanked too, so that braces in literals do not
/// count when matching braces.
struct Lexed {
    code: Vec<u8>,
    shape: Vec<u8>,
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The identifier that starts at `i`, and where it ends.
fn ident_at(bytes: &[u8], i: usize) -> Option<(&str, usize)> {
    let first = *bytes.get(i)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let end = i + bytes[i..].iter().take_while(|&&b| is_ident(b)).count();
    Some((std::str::from_utf8(&bytes[i..end]).expect("ASCII"), end))
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Where the path continues after a `::` at `i` (whitespace allowed around it), if one is there.
fn after_colons(bytes: &[u8], i: usize) -> Option<usize> {
    let i = skip_whitespace(bytes, i);
    bytes[i..].starts_with(b"::").then(|| skip_whitespace(bytes, i + 2))
}

/// Spaces for every byte in `range` but newlines, so that offsets and line numbers stay as they were.
fn blank(bytes: &mut [u8], range: Range<usize>) {
    for byte in &mut bytes[range] {
        if *byte != b'\n' {
            *byte = b' ';
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|window| window == needle).map(|at| from + at)
}

fn lex(source: &str) -> Lexed {
    let src = source.as_bytes();
    let (mut code, mut shape) = (src.to_vec(), src.to_vec());
    let mut i = 0;
    while i < src.len() {
        if src[i..].starts_with(b"//") {
            let end = find(src, b"\n", i).unwrap_or(src.len());
            blank(&mut code, i..end);
            blank(&mut shape, i..end);
            i = end;
        } else if src[i..].starts_with(b"/*") {
            let end = block_comment_end(src, i);
            blank(&mut code, i..end);
            blank(&mut shape, i..end);
            i = end;
        } else if src[i] == b'"' {
            let close = string_close(src, i + 1);
            blank(&mut shape, i + 1..close);
            i = close + 1;
        } else if src[i] == b'\'' {
            match char_literal_end(src, i) {
                Some(end) => {
                    blank(&mut shape, i + 1..end - 1);
                    i = end;
                }
                // A lifetime.
                None => i += 1,
            }
        } else if let Some((word, end)) = ident_at(src, i) {
            match raw_string(src, word, end) {
                Some((content, after)) => {
                    blank(&mut shape, content);
                    i = after;
                }
                None => i = end,
            }
        } else {
            i += 1;
        }
    }
    Lexed { code, shape }
}

/// Where the (nested) block comment opening at `i` ends.
fn block_comment_end(src: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < src.len() {
        if src[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if src[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    src.len()
}

/// The closing quote of the string whose content starts at `i` (or the end of the file).
fn string_close(src: &[u8], mut i: usize) -> usize {
    while i < src.len() {
        match src[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    src.len()
}

/// Where the character literal opening at `i` ends; `None` if the quote starts a lifetime.
fn char_literal_end(src: &[u8], i: usize) -> Option<usize> {
    let next = *src.get(i + 1)?;
    if next == b'\\' {
        return find(src, b"'", i + 3).map(|close| close + 1);
    }
    let width = match next {
        0..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    (src.get(i + 1 + width) == Some(&b'\'')).then_some(i + 2 + width)
}

/// If the identifier `word` ending at `end` opens a raw string (`r"…"`, `r#"…"#`, `br#"…"#`): its
/// content and where it ends.
fn raw_string(src: &[u8], word: &str, end: usize) -> Option<(Range<usize>, usize)> {
    if !matches!(word, "r" | "br" | "cr") {
        return None;
    }
    let hashes = src[end..].iter().take_while(|&&b| b == b'#').count();
    let open = end + hashes;
    if src.get(open) != Some(&b'"') {
        return None;
    }
    let closing: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
    let close = find(src, &closing, open + 1).unwrap_or(src.len());
    Some((open + 1..close, (close + closing.len()).min(src.len())))
}

/// Where the brace block opening at `open` ends (just after its `}`).
fn brace_end(shape: &[u8], open: usize) -> usize {
    let mut depth = 0;
    for (i, &byte) in shape.iter().enumerate().skip(open) {
        match byte {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    shape.len()
}

/// Where the item that starts at `i` ends: its first `;` or its `{…}` block, whichever comes first
/// outside parentheses and brackets (its other attributes included).
fn item_end(shape: &[u8], i: usize) -> usize {
    let mut depth = 0i32;
    for (j, &byte) in shape.iter().enumerate().skip(i) {
        match byte {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b';' if depth == 0 => return j + 1,
            b'{' if depth == 0 => return brace_end(shape, j),
            _ => {}
        }
    }
    shape.len()
}

/// Blanks every item under `#[cfg(test)]`, or the whole file under `#![cfg(test)]`.
fn drop_test_items(lexed: &mut Lexed) {
    if find(&lexed.shape, b"#![cfg(test)]", 0).is_some() {
        let all = 0..lexed.shape.len();
        blank(&mut lexed.code, all.clone());
        blank(&mut lexed.shape, all);
        return;
    }
    const ATTRIBUTE: &[u8] = b"#[cfg(test)]";
    let mut from = 0;
    while let Some(start) = find(&lexed.shape, ATTRIBUTE, from) {
        let end = item_end(&lexed.shape, start + ATTRIBUTE.len());
        blank(&mut lexed.code, start..end);
        blank(&mut lexed.shape, start..end);
        from = end;
    }
}

/// The inline modules (`mod NAME { … }`) of a file, with the span of each block, outer ones first.
fn inline_modules(shape: &[u8]) -> Vec<(String, Range<usize>)> {
    let mut modules = Vec::new();
    let mut i = 0;
    while i < shape.len() {
        let Some((word, end)) = ident_at(shape, i) else {
            i += 1;
            continue;
        };
        if word == "mod" {
            if let Some((name, name_end)) = ident_at(shape, skip_whitespace(shape, end)) {
                let open = skip_whitespace(shape, name_end);
                if shape.get(open) == Some(&b'{') {
                    modules.push((name.to_owned(), open..brace_end(shape, open)));
                }
            }
        }
        i = end;
    }
    modules
}

/// The first name of each path in the use tree at `i`: `x` for `x::y`, and for a group
/// `{a::{b, c}, d}` the names `a` and `d`.
fn tree_heads(code: &[u8], i: usize) -> Vec<String> {
    if code.get(i) == Some(&b'{') {
        group_heads(code, i + 1).0
    } else {
        ident_at(code, i).map(|(word, _)| vec![word.to_owned()]).unwrap_or_default()
    }
}

/// The first name of each path in the group whose content starts at `i`, and where the group ends.
fn group_heads(code: &[u8], mut i: usize) -> (Vec<String>, usize) {
    let mut heads = Vec::new();
    loop {
        i = skip_whitespace(code, i);
        match code.get(i) {
            None => return (heads, i),
            Some(b'}') => return (heads, i + 1),
            Some(b',') => i += 1,
            Some(b'{') => {
                let (inner, end) = group_heads(code, i + 1);
                heads.extend(inner);
                i = end;
            }
            Some(_) => {
                if let Some((word, _)) = ident_at(code, i) {
                    heads.push(word.to_owned());
                }
                // The rest of this path, nested groups and all, up to this group's next `,` or `}`.
                let mut depth = 0;
                while let Some(&byte) = code.get(i) {
                    match byte {
                        b'{' => depth += 1,
                        b'}' if depth == 0 => break,
                        b'}' => depth -= 1,
                        b',' if depth == 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
        }
    }
}

/// The names the crate root (`lib.rs`) brings in with `use`, each with the module it comes from:
/// `pub use client::{Client, ClientBuilder as Builder};` maps `Client` and `Builder` to `client`.
fn root_exports(lib: &str, modules: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut lexed = lex(lib);
    drop_test_items(&mut lexed);
    let shape = &lexed.shape;
    let mut exports = BTreeMap::new();
    let (mut depth, mut i) = (0usize, 0);
    while i < shape.len() {
        match shape[i] {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        let Some((word, end)) = ident_at(shape, i) else {
            i += 1;
            continue;
        };
        if depth == 0 && word == "use" {
            let mut bindings = Vec::new();
            use_bindings(shape, end, None, &mut bindings);
            exports.extend(bindings.into_iter().filter(|(_, module)| modules.contains_key(module)));
        }
        i = end;
    }
    exports
}

/// The names the use tree at `i` binds, each with the first segment of its path (`a::{B, c::D as E}`
/// binds `B` and `E`, both from `a`); returns where the tree ends.
fn use_bindings(code: &[u8], mut i: usize, mut first: Option<String>, out: &mut Vec<(String, String)>) -> usize {
    loop {
        i = skip_whitespace(code, i);
        if code[i..].starts_with(b"::") {
            i += 2;
            continue;
        }
        match code.get(i) {
            Some(b'{') => {
                i += 1;
                loop {
                    i = skip_whitespace(code, i);
                    match code.get(i) {
                        None => return i,
                        Some(b'}') => return i + 1,
                        Some(b',') => i += 1,
                        Some(_) => i = use_bindings(code, i, first.clone(), out).max(i + 1),
                    }
                }
            }
            Some(b'*') => return i + 1,
            _ => {}
        }
        let Some((word, end)) = ident_at(code, i) else { return i };
        if first.is_none() && word != "crate" && word != "self" {
            first = Some(word.to_owned());
        }
        let next = skip_whitespace(code, end);
        if code[next..].starts_with(b"::") {
            i = next;
            continue;
        }
        let bound = match ident_at(code, next) {
            Some(("as", as_end)) => ident_at(code, skip_whitespace(code, as_end)),
            _ => Some((word, next)),
        };
        let Some((name, after)) = bound else { return next };
        if let Some(first) = first.filter(|_| name != "self" && name != "_") {
            out.push((name.to_owned(), first));
        }
        return after;
    }
}

/// The top-level modules the file at `module_path` imports, each with the line that imports it.
fn file_imports(
    text: &str,
    module_path: &[String],
    modules: &BTreeMap<String, String>,
    exports: &BTreeMap<String, String>,
) -> Vec<(usize, String)> {
    let mut lexed = lex(text);
    drop_test_items(&mut lexed);
    let inline = inline_modules(&lexed.shape);
    let code = &lexed.code;
    // A name at the crate root: a module, or an item the root re-exports from one.
    let top_level = |name: String| if modules.contains_key(&name) { Some(name) } else { exports.get(&name).cloned() };
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let Some((word, end)) = ident_at(code, i) else {
            i += 1;
            continue;
        };
        let start = i;
        i = end;
        // `$crate` in a macro, or a segment in the middle of a path.
        if code[..start].ends_with(b"$") || code[..start].ends_with(b"::") {
            continue;
        }
        let (base, tree) = match word {
            "crate" => match after_colons(code, end) {
                Some(tree) => (Vec::new(), tree),
                None => continue,
            },
            "super" => {
                let Some(mut tree) = after_colons(code, end) else { continue };
                let mut ups = 1;
                while let Some(("super", next_end)) = ident_at(code, tree) {
                    let Some(after) = after_colons(code, next_end) else { break };
                    (tree, ups) = (after, ups + 1);
                }
                let mut path = module_path.to_vec();
                path.extend(inline.iter().filter(|(_, span)| span.contains(&start)).map(|(name, _)| name.clone()));
                if ups > path.len() {
                    continue;
                }
                path.truncate(path.len() - ups);
                (path, tree)
            }
            _ => continue,
        };
        let line = 1 + code[..start].iter().filter(|&&b| b == b'\n').count();
        match base.first() {
            Some(top) => found.push((line, top.clone())),
            None => found.extend(tree_heads(code, tree).into_iter().filter_map(top_level).map(|module| (line, module))),
        }
    }
    found
}

/// Every import cycle, once: for each module on a cycle, the shortest cycle through it, written from
/// its alphabetically first module, then the lines that make each step.
fn cycles(graph: &CrateGraph) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in graph.imports.keys() {
        if let Some(mut cycle) = shortest_cycle(graph, start) {
            let first = (0..cycle.len()).min_by_key(|&at| &cycle[at]).expect("a cycle has a module");
            cycle.rotate_left(first);
            found.insert(cycle);
        }
    }
    found
        .into_iter()
        .map(|cycle| {
            let ring: Vec<&str> = cycle.iter().chain(cycle.first()).map(String::as_str).collect();
            let mut text = format!("{}: {}", graph.name, ring.join(" -> "));
            for step in ring.windows(2) {
                let places = &graph.imports[step[0]][step[1]];
                text.push_str(&format!("\n    {} -> {}: {}", step[0], step[1], places_text(places)));
            }
            text
        })
        .collect()
}

/// The shortest cycle from `start` back to it, without repeating `start` at the end.
fn shortest_cycle(graph: &CrateGraph, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(module) = queue.pop_front() {
        for next in graph.imported_by(module) {
            if next == start {
                let mut cycle = vec![module.to_owned()];
                let mut at = module;
                while at != start {
                    at = came_from[at];
                    cycle.push(at.to_owned());
                }
                cycle.reverse();
                return Some(cycle);
            }
            if !came_from.contains_key(next) {
                came_from.insert(next, module);
                queue.push_back(next);
            }
        }
    }
    None
}

/// The lines that make one import, for a message: the first three and how many more.
fn places_text(places: &[String]) -> String {
    let mut text = places.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if places.len() > 3 {
        text.push_str(&format!(" and {} more", places.len() - 3));
    }
    text
}

/// One crate's `layers` block: each module's layer, 0 for the top line.
#[derive(Debug, Default)]
struct Layers(BTreeMap<String, usize>);

/// Every `layers` block of `markdown` by crate, and what is wrong with the blocks.
fn parse_layers(markdown: &str) -> (BTreeMap<String, Layers>, Vec<String>) {
    let (mut blocks, mut problems) = (BTreeMap::new(), Vec::new());
    let mut lines = markdown.lines().enumerate().map(|(at, line)| (at + 1, line));
    while let Some((opened, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else { continue };
        let content: Vec<(usize, &str)> =
            lines.by_ref().take_while(|(_, line)| !line.trim_start().starts_with("```")).collect();
        if info.trim() == "layers" {
            parse_block(opened, &content, &mut blocks, &mut problems);
        }
    }
    (blocks, problems)
}

/// One `layers` block (`opened` is the line of its fence): `crate NAME`, then one line per layer.
fn parse_block(
    opened: usize,
    content: &[(usize, &str)],
    blocks: &mut BTreeMap<String, Layers>,
    problems: &mut Vec<String>,
) {
    let mut lines = content.iter().filter_map(|&(at, line)| {
        let text = line.split('#').next().unwrap_or_default().trim();
        (!text.is_empty()).then_some((at, text))
    });
    let Some((at, first)) = lines.next() else {
        problems
            .push(format!("{ARCHITECTURE} line {opened}: an empty `layers` block (its first line is `crate NAME`)"));
        return;
    };
    let name = match first.split_whitespace().collect::<Vec<_>>()[..] {
        ["crate", name] => name,
        _ => {
            problems
                .push(format!("{ARCHITECTURE} line {at}: a `layers` block starts with `crate NAME`, not `{first}`"));
            return;
        }
    };
    if blocks.contains_key(name) {
        problems.push(format!("{ARCHITECTURE} line {at}: a second `layers` block for crate {name}"));
        return;
    }
    let (mut layers, mut listed_on) = (BTreeMap::new(), BTreeMap::new());
    for (layer, (at, text)) in lines.enumerate() {
        for module in text.split_whitespace() {
            match listed_on.get(module) {
                Some(first) => problems.push(format!(
                    "{ARCHITECTURE} line {at}: {name}: module {module} is listed twice (first on line {first})"
                )),
                None => {
                    listed_on.insert(module, at);
                    layers.insert(module.to_owned(), layer);
                }
            }
        }
    }
    blocks.insert(name.to_owned(), Layers(layers));
}

/// What is wrong with `graph` against its crate's `layers` block.
fn check_layers(graph: &CrateGraph, layers: Option<&Layers>) -> Vec<String> {
    let name = &graph.name;
    let Some(Layers(layer_of)) = layers else {
        return vec![format!(
            "{name}: {ARCHITECTURE} has no `layers` block for crate {name}: add one whose first line is `crate {name}`, \
             e.g.\n{LAYERS_EXAMPLE}"
        )];
    };
    let mut problems = Vec::new();
    for (module, place) in graph.modules.iter().filter(|(module, _)| !layer_of.contains_key(*module)) {
        problems.push(format!(
            "{name}: module {module} ({place}) is not in the `layers` block for {name}: add it on the line of its layer"
        ));
    }
    for module in layer_of.keys().filter(|module| !graph.modules.contains_key(*module)) {
        problems.push(format!(
            "{name}: the `layers` block lists {module}, which is not a top-level module of {name}/src (no {module}.rs, \
             no {module}/): remove it or correct its name"
        ));
    }
    for (importer, imported) in &graph.imports {
        for (module, places) in imported {
            let (Some(from), Some(to)) = (layer_of.get(importer), layer_of.get(module)) else { continue };
            let relation = match to.cmp(from) {
                std::cmp::Ordering::Less => "which is above it",
                std::cmp::Ordering::Equal => "which is on its own layer",
                std::cmp::Ordering::Greater => continue,
            };
            problems.push(format!("{name}: {importer} imports {module}, {relation} ({})", places_text(places)));
        }
    }
    problems
}

/// A crate `fake` in a temporary directory: `files` are paths under `src/` and their text.
fn fake_crate(files: &[(&str, &str)]) -> (tempfile::TempDir, CrateGraph) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (path, text) in files {
        let path = dir.path().join("src").join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("create the folder");
        std::fs::write(&path, text).expect("write the file");
    }
    let graph = read_crate(dir.path(), "fake");
    (dir, graph)
}

/// Each import as `from -> to: places`.
fn imports_of(graph: &CrateGraph) -> Vec<String> {
    let steps = graph.imports.iter().flat_map(|(from, imported)| imported.iter().map(move |(to, at)| (from, to, at)));
    steps.map(|(from, to, places)| format!("{from} -> {to}: {}", places.join(", "))).collect()
}

#[test]
fn the_checker_finds_cycles_through_every_kind_of_import() {
    let (_dir, graph) = fake_crate(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\nmod e;\npub use d::Thing;\n"),
        ("a.rs", "use crate::b::Helper;\n"),
        ("b.rs", "pub fn f() {\n    crate::c::g();\n}\n"),
        ("c.rs", "use super::{a::Item, d};\n"),
        (
            "d.rs",
            "// use crate::a::X;\n/// See [`crate::a`].\npub struct Thing(pub crate::e::Part);\n/* crate::b */\n\
             #[cfg(test)]\nmod tests {\n    use crate::a::X;\n}\n",
        ),
        ("e.rs", "pub struct Part;\npub fn make() -> crate::Thing {\n    todo!()\n}\n"),
    ]);
    assert_eq!(
        imports_of(&graph),
        [
            "a -> b: fake/src/a.rs:1",
            "b -> c: fake/src/b.rs:2",
            "c -> a: fake/src/c.rs:1",
            "c -> d: fake/src/c.rs:1",
            "d -> e: fake/src/d.rs:3",
            "e -> d: fake/src/e.rs:2",
        ]
    );
    assert_eq!(
        cycles(&graph),
        [
            "fake: a -> b -> c -> a\n    a -> b: fake/src/a.rs:1\n    b -> c: fake/src/b.rs:2\n    c -> a: fake/src/c.rs:1",
            "fake: d -> e -> d\n    d -> e: fake/src/d.rs:3\n    e -> d: fake/src/e.rs:2",
        ]
    );
}

/// A crate with no cycle, whose files use every form of path the checker reads and some it must not.
const CLEAN: &[(&str, &str)] = &[
    ("lib.rs", "mod folder;\nmod low;\nmod mid;\nmod top;\npub use low::{Base as Renamed, Other};\n"),
    ("main.rs", "use fake::top;\nfn main() {\n    crate::mid::run();\n}\n"),
    ("bin/tool.rs", "use crate::mid;\n"),
    (
        "top.rs",
        "use crate::{\n    folder,\n    mid::{self, Inner},\n};\n\
         const BRACE: &str = \"{ crate::nothing\";\n\
         const QUOTE: char = '\"';\n\
         fn borrowed<'a>(text: &'a str) -> &'a str {\n    text\n}\n\
         #[cfg(test)]\nfn helper() {\n    let _ = \"}\";\n    crate::low::Base;\n}\n\
         pub fn run() -> crate::Renamed {\n    todo!()\n}\n\
         mod inline {\n    use super::run;\n    use super::super::low::Other;\n}\n",
    ),
    (
        "mid.rs",
        "#[derive(serde::Serialize)]\npub struct Inner(#[serde(with = \"crate::low\")] u8);\n\
         macro_rules! call {\n    () => {\n        $crate::top::run()\n    };\n}\n\
         pub(crate) fn visible() {}\npub(super) fn also_visible() {}\n",
    ),
    ("low.rs", "pub struct Base;\npub struct Other;\n"),
    ("folder/mod.rs", "mod inner;\nuse self::inner::Piece;\nuse super::low::Other;\n"),
    (
        "folder/inner.rs",
        "use super::Piece;\nuse super::super::mid::Inner;\npub struct Piece;\nmod nested {\n    use super::Piece;\n}\n",
    ),
];

#[test]
fn the_checker_reads_groups_strings_folders_and_root_reexports_and_skips_tests_and_macros() {
    let (_dir, graph) = fake_crate(CLEAN);
    let modules: Vec<(&str, &str)> = graph.modules.iter().map(|(name, at)| (name.as_str(), at.as_str())).collect();
    assert_eq!(
        modules,
        [
            ("folder", "fake/src/folder/"),
            ("low", "fake/src/low.rs"),
            ("mid", "fake/src/mid.rs"),
            ("top", "fake/src/top.rs"),
        ]
    );
    assert_eq!(
        imports_of(&graph),
        [
            "folder -> low: fake/src/folder/mod.rs:3",
            "folder -> mid: fake/src/folder/inner.rs:2",
            "mid -> low: fake/src/mid.rs:2",
            "top -> folder: fake/src/top.rs:1",
            "top -> low: fake/src/top.rs:15, fake/src/top.rs:20",
            "top -> mid: fake/src/top.rs:1",
        ]
    );
    assert_eq!(cycles(&graph), Vec::<String>::new());
}

#[test]
fn the_checker_accepts_imports_that_go_down_the_layers() {
    let markdown = "# Fake\n\n```text\ncrate fake\nnot a layers block\n```\n\n\
                    ```layers\ncrate fake   # the fake crate\ntop          # the entry\n\nfolder\nmid\nlow\n```\n";
    let (blocks, problems) = parse_layers(markdown);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(blocks.keys().collect::<Vec<_>>(), ["fake"]);
    let (_dir, graph) = fake_crate(CLEAN);
    assert_eq!(check_layers(&graph, blocks.get("fake")), Vec::<String>::new());
}

#[test]
fn the_checker_names_every_import_against_the_layers_and_every_module_the_page_gets_wrong() {
    let (_dir, graph) = fake_crate(CLEAN);
    let (blocks, problems) = parse_layers("```layers\ncrate fake\ntop mid # one layer\nfolder\nghost\n```\n");
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(
        check_layers(&graph, blocks.get("fake")),
        [
            "fake: module low (fake/src/low.rs) is not in the `layers` block for fake: add it on the line of its layer",
            "fake: the `layers` block lists ghost, which is not a top-level module of fake/src (no ghost.rs, no \
             ghost/): remove it or correct its name",
            "fake: folder imports mid, which is above it (fake/src/folder/inner.rs:2)",
            "fake: top imports mid, which is on its own layer (fake/src/top.rs:1)",
        ]
    );
    let missing = check_layers(&graph, None);
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].starts_with(
            "fake: ARCHITECTURE.md has no `layers` block for crate fake: add one whose first line is `crate fake`"
        ),
        "{}",
        missing[0]
    );
}

#[test]
fn the_checker_refuses_a_layers_block_it_cannot_read() {
    let markdown = "```layers\n```\n\
                    ```layers\nfake\n```\n\
                    ```layers\ncrate fake\ntop\nmid top\n```\n\
                    ```layers\ncrate fake\nlow\n```\n";
    let (blocks, problems) = parse_layers(markdown);
    assert_eq!(
        problems,
        [
            "ARCHITECTURE.md line 1: an empty `layers` block (its first line is `crate NAME`)",
            "ARCHITECTURE.md line 4: a `layers` block starts with `crate NAME`, not `fake`",
            "ARCHITECTURE.md line 9: fake: module top is listed twice (first on line 8)",
            "ARCHITECTURE.md line 12: a second `layers` block for crate fake",
        ]
    );
    assert_eq!(blocks["fake"].0, BTreeMap::from([("top".to_owned(), 0), ("mid".to_owned(), 1)]));
}
