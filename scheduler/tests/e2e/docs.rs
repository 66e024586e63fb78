//! docs/architecture.md names only what exists: every file and folder, every type, function
//! and constant in backticks, and every subcommand of both binaries. (Files that do not exist
//! yet, where a coming concern will land, are in italics, not backticks.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file and folder of the repository (target/ and .git/ aside), relative to its root.
fn tree(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let relative = path.strip_prefix(root()).unwrap().display().to_string();
        if relative.starts_with("target") || relative.starts_with(".git") {
            continue;
        }
        if path.is_dir() {
            out.push(format!("{relative}/"));
            tree(&path, out);
        } else {
            out.push(relative);
        }
    }
}

/// What the sources define: `fn`, `const`, `static`, `struct`, `enum`, `trait`, `type`, `mod`
/// names and enum variants, as words.
fn definitions(paths: &[String]) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for path in paths.iter().filter(|p| p.ends_with(".rs")) {
        let text = std::fs::read_to_string(root().join(path)).unwrap();
        let tokens: Vec<&str> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|t| !t.is_empty())
            .collect();
        for pair in tokens.windows(2) {
            if [
                "fn", "const", "static", "struct", "enum", "trait", "type", "mod",
            ]
            .contains(&pair[0])
            {
                words.insert(pair[1].to_owned());
            }
        }
        // Enum variants and other capitalised words used in the code (`Stored::Conflict`).
        words.extend(
            tokens
                .iter()
                .filter(|t| t.starts_with(|c: char| c.is_ascii_uppercase()))
                .map(|t| (*t).to_owned()),
        );
    }
    words
}

#[test]
fn architecture_names_only_what_exists() {
    let text = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let mut paths = Vec::new();
    tree(&root(), &mut paths);
    let defined = definitions(&paths);
    let external = [
        "sqlx",
        "sea_query",
        "std",
        "serde",
        "tokio",
        "chrono",
        "axum",
        "clap",
    ];
    let mut checked = 0;
    let mut missing = Vec::new();
    for token in text.split('`').skip(1).step_by(2) {
        let token = token.trim_end_matches("()");
        if token.is_empty()
            || token.contains(char::is_whitespace)
            || token.contains(['{', '<', '*', '"', '\''])
            || token.starts_with(['/', '-', '.', '='])
            || token.chars().all(|c| c.is_ascii_digit())
        {
            continue;
        }
        let first = token.split(['/', ':']).next().unwrap_or_default();
        let all_caps = first.chars().all(|c| c.is_ascii_uppercase() || c == '_');
        if token.contains('/') || token.ends_with(".rs") || token.ends_with(".sql") {
            if all_caps {
                continue; // a variable's folder: `SPOOL_DIR/state/`
            }
            checked += 1;
            let folder = format!("{}/", token.trim_end_matches('/'));
            let found = paths.iter().any(|p| {
                p == token
                    || *p == folder
                    || p.ends_with(&format!("/{token}"))
                    || p.ends_with(&format!("/{folder}"))
            });
            if !found {
                missing.push(format!("file or folder `{token}`"));
            }
        } else if token.contains("::") {
            let segments: Vec<&str> = token.split("::").collect();
            if external.contains(&segments[0]) {
                continue;
            }
            checked += 1;
            for segment in &segments {
                let is_module = segment.starts_with(|c: char| c.is_ascii_lowercase())
                    && paths.iter().any(|p| {
                        p.ends_with(&format!("/{segment}.rs"))
                            || p.ends_with(&format!("/{segment}/"))
                    });
                let crate_name = ["agent_sdk", "collector", "scheduler"].contains(segment);
                if !(defined.contains(*segment) || is_module || crate_name) {
                    missing.push(format!("`{segment}` of `{token}`"));
                }
            }
        } else if token.chars().all(|c| c.is_alphanumeric() || c == '_')
            && (token.starts_with(|c: char| c.is_ascii_uppercase()))
        {
            // A type (`Watcher`) or a constant (`WATCH_LOCK`).
            checked += 1;
            if !defined.contains(token) {
                missing.push(format!("`{token}`"));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} names checked: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "docs/architecture.md names what does not exist: {missing:#?}"
    );
}

#[test]
fn architecture_lists_every_subcommand() {
    let text = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    for (binary, command) in [
        ("collector", collector::cli::Cli::command()),
        ("scheduler", scheduler::cli::Cli::command()),
    ] {
        for sub in command.get_subcommands() {
            let mut names = vec![format!("{binary} {}", sub.get_name())];
            if sub.has_subcommands() {
                names = sub
                    .get_subcommands()
                    .map(|leaf| format!("{binary} {} {}", sub.get_name(), leaf.get_name()))
                    .collect();
            }
            for name in names {
                assert!(
                    text.contains(&format!("`{name}`")),
                    "docs/architecture.md does not list `{name}`"
                );
            }
        }
    }
}

/// The commands README.md shows, in its code blocks and inline: each names a subcommand and
/// flags of the binary that exist (`collector`, `scheduler`, `platform`) and a target the
/// Makefile has, so that a rename cannot leave the README behind.
#[test]
fn readme_commands_name_what_exists() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let platform = std::fs::read_to_string(root().join("platform/src/main.rs")).unwrap();
    let mut lines: Vec<&str> = readme
        .split("```")
        .skip(1)
        .step_by(2)
        .flat_map(|block| block.lines().skip(1))
        .collect();
    // Inline commands: `cargo run …`, `collector …`, `scheduler …`, `make …`.
    lines.extend(readme.split('`').skip(1).step_by(2).filter(|t| {
        ["cargo run", "collector ", "scheduler ", "make "]
            .iter()
            .any(|p| t.starts_with(p))
    }));
    let binaries = [
        ("collector", collector::cli::Cli::command()),
        ("scheduler", scheduler::cli::Cli::command()),
    ];
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in &lines {
        // A comment is not a command.
        let command = line.split(" #").next().unwrap_or_default();
        let words: Vec<&str> = command
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == '|')
            .map(|w| w.trim_matches(['[', ']', '.', '`', '"']))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, word) in words.iter().enumerate() {
            if *word == "make"
                && let Some(target) = words.get(i + 1).filter(|t| !t.starts_with('-'))
                && let Some(target) = target.split('=').next()
                && target.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            {
                checked += 1;
                if !makefile
                    .lines()
                    .any(|l| l.starts_with(&format!("{target}:")))
                {
                    wrong.push(format!("make {target}: no such target ({line})"));
                }
            }
            if *word == "platform" && words.get(i.wrapping_sub(1)) == Some(&"-p") {
                for flag in words[i + 1..]
                    .iter()
                    .filter(|w| w.starts_with("--") && w.len() > 2)
                {
                    let field = flag
                        .trim_start_matches("--")
                        .split('=')
                        .next()
                        .unwrap_or("");
                    checked += 1;
                    if !platform.contains(&format!(" {}:", field.replace('-', "_"))) {
                        wrong.push(format!("platform {flag}: no such flag ({line})"));
                    }
                }
            }
            for (binary, cli) in &binaries {
                if word != binary {
                    continue;
                }
                // `cargo run -p collector -- token`: the subcommand follows the `--`.
                let mut rest = &words[i + 1..];
                if words.get(i.wrapping_sub(1)) == Some(&"-p") {
                    match rest.iter().position(|w| *w == "--") {
                        Some(dash) => rest = &rest[dash + 1..],
                        None => continue,
                    }
                }
                // The word after the binary is its subcommand (`collector` alone serves).
                let Some(sub) = rest.first().and_then(|name| cli.find_subcommand(name)) else {
                    continue;
                };
                let mut command = sub;
                let mut after = &rest[1..];
                if let Some(leaf) = after.first().and_then(|name| command.find_subcommand(name)) {
                    command = leaf;
                    after = &after[1..];
                }
                checked += 1;
                for flag in after.iter().filter(|w| w.starts_with("--") && w.len() > 2) {
                    let name = flag
                        .trim_start_matches("--")
                        .split('=')
                        .next()
                        .unwrap_or("");
                    let known = name == "help"
                        || command.get_arguments().any(|a| a.get_long() == Some(name));
                    if !known {
                        wrong.push(format!(
                            "{binary} {} {flag}: no such flag ({line})",
                            command.get_name()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} commands checked: is the scan broken?"
    );
    assert!(
        wrong.is_empty(),
        "README.md shows what does not exist: {wrong:#?}"
    );
}
