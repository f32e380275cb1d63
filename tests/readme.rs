//! The README's copies of documentation that lives elsewhere stay copies:
//! a change to one without the other fails here.

use std::path::Path;

/// The rows of the first markdown table in `text`.
fn table_rows(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .collect()
}

#[test]
fn the_readme_metrics_table_is_the_one_session_kit_telemetry_documents() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let documented = std::fs::read_to_string(root.join("session-core/src/telemetry/metrics.md"))
        .expect("the metrics table's source");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("the README");
    let rows = table_rows(&documented);
    assert!(rows.len() > 3, "metrics.md has no table: {documented}");
    let start = readme
        .find(rows[2])
        .expect("the README has the metrics table's first metric row");
    let header = readme[..start]
        .rfind(rows[0])
        .expect("the README's metrics table has the documented header");
    let in_readme = table_rows(&readme[header..]);
    assert_eq!(
        in_readme, rows,
        "the README's metrics table differs from session-core/src/telemetry/metrics.md; copy it over"
    );
}

/// The documents a reader copies code from: the README and the guides.
fn guides(root: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
            .collect();
        docs.sort();
        files.extend(docs);
    }
    files.retain(|path| path.exists());
    files
}

/// The fenced code blocks of `text` whose info string starts with `lang`,
/// each with the line it starts on.
fn fenced_blocks<'a>(text: &'a str, lang: &str) -> Vec<(usize, Vec<&'a str>)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, bool, Vec<&str>)> = None;
    for (number, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```") => {
                let info = fence.trim_start_matches('`').trim();
                let wanted = info.split([',', ' ']).next() == Some(lang);
                current = Some((number + 1, wanted, Vec::new()));
            }
            None => {}
            Some(_) if fence.starts_with("```") => {
                let (start, wanted, lines) = current.take().expect("inside a block");
                if wanted {
                    blocks.push((start, lines));
                }
            }
            Some((_, _, lines)) => lines.push(line),
        }
    }
    blocks
}

/// The code lines of every Rust code block in the doc comments of `source`
/// (`//!` and `///`), with rustdoc's hidden lines (`# …`) left out: what a
/// reader of the rendered docs sees, and what `cargo test --doc` compiles.
fn doc_test_lines(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in source.lines() {
        let trimmed = line.trim_start();
        let Some(doc) = trimmed
            .strip_prefix("//!")
            .or_else(|| trimmed.strip_prefix("///"))
        else {
            in_code = false;
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        if doc.trim_start().starts_with("```") {
            let info = doc.trim_start().trim_start_matches('`').trim();
            in_code = !in_code && rustdoc_compiles(info);
            out.push(String::new()); // a block boundary
            continue;
        }
        if in_code && doc != "#" && !doc.starts_with("# ") {
            out.push(doc.to_owned());
        }
    }
    out
}

/// Whether rustdoc compiles a doc block with this info string: untagged
/// blocks and `rust`, `no_run` or `should_panic` ones are; `ignore` and
/// `compile_fail` ones are not compiled as working code, and `text`,
/// `toml`, `sh` and the like are not Rust.
fn rustdoc_compiles(info: &str) -> bool {
    let tokens: Vec<&str> = info
        .split([',', ' '])
        .filter(|token| !token.is_empty())
        .collect();
    tokens.iter().all(|token| {
        matches!(*token, "rust" | "no_run" | "should_panic") || token.starts_with("edition")
    })
}

/// Whether a crate takes `guide` whole as its docs
/// (`#![doc = include_str!("…/docs/x.md")]`): then its Rust blocks are that
/// crate's doc tests as they stand, and its own tests check the rest
/// (`migration-tests/tests/guide.rs` for docs/migrating.md).
fn is_a_crates_docs(root: &Path, guide: &Path) -> bool {
    let Some(name) = guide.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    let mut lib_files = Vec::new();
    for dir in ["src", "migration-tests/src"] {
        rust_files(&root.join(dir), &mut lib_files);
    }
    lib_files.iter().any(|path| {
        std::fs::read_to_string(path).is_ok_and(|source| {
            source.contains("#![doc = include_str!(") && source.contains(&format!("docs/{name}\")"))
        })
    })
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Whether `needle` occurs in `haystack` as consecutive lines, compared
/// without their indentation (a snippet may sit inside a function).
fn contains_run(haystack: &[String], needle: &[&str]) -> bool {
    let needle: Vec<&str> = needle.iter().map(|line| line.trim()).collect();
    haystack.windows(needle.len()).any(|window| {
        window
            .iter()
            .map(|line| line.trim())
            .eq(needle.iter().copied())
    })
}

/// A README that shows code nobody compiles drifts from the API: every
/// Rust block in the README and the guides must be, line for line, a run
/// of an example in `examples/` (built by `cargo clippy --all-targets` and
/// `cargo test`, and the quick starts run by `scripts/smoke-example`) or
/// of a doc test in the crates' sources (compiled, and run unless marked
/// `no_run`, by `cargo test --doc`).
#[test]
fn every_rust_block_of_the_readme_and_the_guides_is_compiled_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    let mut examples = Vec::new();
    rust_files(&root.join("examples"), &mut examples);
    rust_files(
        &root.join("adapters/tower-sessions/examples"),
        &mut examples,
    );
    for path in &examples {
        let text = std::fs::read_to_string(path).expect("an example");
        sources.push(text.lines().map(str::to_owned).collect::<Vec<_>>());
    }
    let mut crate_sources = Vec::new();
    for dir in [
        "src",
        "session-core/src",
        "session-redis/src",
        "session-memcached/src",
        "session-postgres/src",
        "session-cluster/src",
        "session-conformance/src",
        "adapters/tower/src",
        "adapters/actix/src",
        "adapters/tower-sessions/src",
    ] {
        rust_files(&root.join(dir), &mut crate_sources);
    }
    for path in &crate_sources {
        let text = std::fs::read_to_string(path).expect("a source file");
        sources.push(doc_test_lines(&text));
    }
    let mut checked = 0;
    let mut orphans = Vec::new();
    for guide in guides(root) {
        if is_a_crates_docs(root, &guide) {
            continue;
        }
        let text = std::fs::read_to_string(&guide).expect("a guide");
        for (line, block) in fenced_blocks(&text, "rust") {
            checked += 1;
            if !sources.iter().any(|source| contains_run(source, &block)) {
                orphans.push(format!(
                    "{}:{line}: {}",
                    guide.strip_prefix(root).unwrap_or(&guide).display(),
                    block.first().copied().unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        checked >= 2,
        "found only {checked} Rust blocks: is the fence parser broken?"
    );
    assert!(
        orphans.is_empty(),
        "these Rust blocks are not copies of an example or a doc test, so nothing compiles them; \
         move the code into examples/ or a doc test and copy it back verbatim:\n{}",
        orphans.join("\n")
    );
}

/// The README's quick starts are the examples `scripts/smoke-example`
/// runs, whole: a newcomer who pastes one gets a program that builds.
#[test]
fn the_readme_quick_starts_are_the_quickstart_examples_whole() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("the README");
    let blocks = fenced_blocks(&readme, "rust");
    for example in ["quickstart_axum", "quickstart_actix"] {
        let file = std::fs::read_to_string(root.join(format!("examples/{example}.rs")))
            .expect("the quick start example");
        // Its own `//!` lines say what it is, for the example's reader;
        // the README says that in prose.
        let file: Vec<&str> = file
            .lines()
            .skip_while(|line| line.starts_with("//!"))
            .skip_while(|line| line.is_empty())
            .collect();
        assert!(
            blocks.iter().any(|(_, block)| *block == file),
            "README.md shows no block equal to examples/{example}.rs"
        );
    }
}

/// Every feature a `Cargo.toml` line of the README or a guide turns on
/// exists, and every config block parses as a [`SessionConfig`].
///
/// [`SessionConfig`]: session_kit::config::SessionConfig
#[test]
fn every_toml_block_of_the_readme_and_the_guides_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("the manifest");
    let features_section = manifest
        .split("\n[features]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("the facade has a [features] table");
    let features: Vec<&str> = features_section
        .lines()
        .filter_map(|line| line.split_once(" = ").map(|(name, _)| name.trim()))
        .collect();
    for guide in guides(root) {
        if is_a_crates_docs(root, &guide) {
            continue;
        }
        let text = std::fs::read_to_string(&guide).expect("a guide");
        for (line, block) in fenced_blocks(&text, "toml") {
            let body = block.join("\n");
            let place = format!(
                "{}:{line}",
                guide.strip_prefix(root).unwrap_or(&guide).display()
            );
            if body.contains("session-kit =") {
                let wanted = body
                    .lines()
                    .filter(|line| line.trim_start().starts_with("session-kit ="))
                    .flat_map(|line| line.split("features = [").nth(1))
                    .flat_map(|list| list.split(']').next())
                    .flat_map(|list| list.split(','))
                    .map(|name| name.trim().trim_matches('"'))
                    .filter(|name| !name.is_empty());
                for feature in wanted {
                    assert!(
                        features.contains(&feature),
                        "{place}: feature `{feature}` is not one of session-kit's ({features:?})"
                    );
                }
            } else if !body.contains("[dependencies]") && !body.contains("[package]") {
                if let Err(err) = session_kit::config::SessionConfig::from_toml(&body) {
                    panic!("{place}: this config block does not parse: {err}");
                }
            }
        }
    }
}
