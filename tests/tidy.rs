//! Tidy: the repository's own conventions, checked as tests so that they
//! do not drift. `cargo xtask test` runs them (after building the `ipc-kit`
//! command, which one check asks); alone:
//! `cargo build -p ipc-kit-cli && cargo test -p ipc-kit-tests --test tidy`.
//!
//! - The README's layout section names every `cargo xtask` command that
//!   xtask's dispatch knows.
//! - Every crate's `src/lib.rs` starts with crate docs (`//!`).
//! - The mechanism lists agree: `ipc_kit::Mechanism::ALL` against the
//!   mechanisms of `ipc-kit-stress`, `ipc-kit-faults` and `ipc-kit bench`,
//!   and against the README's mechanism table.
//!
//! Each check names the file to change and what it lacks.

use std::path::{Path, PathBuf};
use std::process::Command;

use ipc_kit::Mechanism;

/// Mechanisms that a program may carry besides the umbrella's, and why
/// the umbrella does not: a name here is no second spelling of one of
/// `Mechanism::ALL`.
const NOT_IN_THE_UMBRELLA: &[(&str, &str)] = &[
    ("shm-channel", "the typed slot channel: the umbrella's traits carry byte messages"),
    ("unix-socket", "`ipc-kit bench`'s reference: ipc-kit has no socket side"),
    ("service", "`ipc-kit bench`'s connection of a service (ipc-service), not a pair of the umbrella's traits"),
    ("pubsub", "`ipc-kit bench`'s one publisher and many subscribers (ipc-service), not a pair of two ends"),
    ("shm-line", "`ipc-kit bench`'s limit of a round trip: one cache line, no ipc-kit side"),
    (
        "shm-lines",
        "`ipc-kit bench`'s limit of a round trip through two one-way links: a line each way, no ipc-kit side",
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_path_buf()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("tidy: cannot read {}: {e}", path.display()))
}

/// The commands of xtask's dispatch: the `"name" =>` arms of the `match`
/// on the task in `xtask/src/main.rs`.
fn xtask_commands(main_rs: &str) -> Vec<String> {
    let start = main_rs.find("match task {").expect("tidy: xtask/src/main.rs has no `match task {` dispatch");
    let mut names = Vec::new();
    for line in main_rs[start..].lines().skip(1) {
        let line = line.trim_start();
        if line.starts_with("_ =>") {
            break;
        }
        if let Some(rest) = line.strip_prefix('"')
            && let Some((name, after)) = rest.split_once('"')
            && after.trim_start().starts_with("=>")
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// The section of a Markdown text under the first heading whose title
/// contains `word` (any case), up to the next heading of the same or a
/// higher level; headings inside code blocks do not count.
fn section<'a>(text: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let mut fenced = false;
    let mut found: Option<(usize, &str, usize)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let at = offset;
        offset += line.len();
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let level = line.chars().take_while(|&c| c == '#').count();
        match found {
            Some((start, heading, l)) if level <= l => return Some((heading, &text[start..at])),
            None if line.to_lowercase().contains(&word.to_lowercase()) => found = Some((offset, line.trim(), level)),
            _ => {}
        }
    }
    found.map(|(start, heading, _)| (heading, &text[start..]))
}

/// Whether `word` occurs in `text` as a whole word (between characters
/// that are not letters, digits, `-` or `_`).
fn has_word(text: &str, word: &str) -> bool {
    let part = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(part) && !text[i + word.len()..].chars().next().is_some_and(part)
    })
}

#[test]
fn readme_layout_names_every_xtask_command() {
    let commands = xtask_commands(&read("xtask/src/main.rs"));
    assert!(commands.len() >= 4, "tidy: found only {commands:?} in xtask/src/main.rs's dispatch");
    let readme = read("README.md");
    let Some((heading, body)) = section(&readme, "layout") else {
        panic!(
            "tidy: README.md has no section whose heading contains \"Layout\"; add one that names the crates and the `cargo xtask` commands {commands:?}"
        );
    };
    let missing: Vec<&String> = commands.iter().filter(|c| !has_word(body, c)).collect();
    assert!(
        missing.is_empty(),
        "tidy: README.md's section {heading:?} does not name the xtask command(s) {missing:?} \
         (xtask/src/main.rs dispatches {commands:?}); name each there, e.g. `cargo xtask {}`",
        missing[0]
    );
}

#[test]
fn every_lib_rs_starts_with_crate_docs() {
    let mut libs = vec!["tests/src/lib.rs".to_owned()];
    let crates = std::fs::read_dir(root().join("crates")).expect("tidy: cannot list crates/");
    for dir in crates.flatten() {
        if dir.path().join("src/lib.rs").exists() {
            libs.push(format!("crates/{}/src/lib.rs", dir.file_name().to_string_lossy()));
        }
    }
    assert!(libs.len() > 4, "tidy: found only {libs:?}");
    let bare: Vec<String> = libs
        .iter()
        .filter(|rel| !read(rel).lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("//!")))
        .cloned()
        .collect();
    assert!(bare.is_empty(), "tidy: {bare:?} do not start with crate docs: make the first line a `//!` comment");
}

/// The values a program's `--help` lists for `flag`
/// (`[possible values: a, b, c]` on the flag's lines).
fn possible_values(program: &Path, args: &[&str], flag: &str) -> Vec<String> {
    let out = Command::new(program)
        .args(args)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("tidy: cannot run {}: {e}", program.display()));
    let help = String::from_utf8_lossy(&out.stdout);
    let at =
        help.find(&format!("{flag} <")).unwrap_or_else(|| panic!("tidy: {} has no {flag}:\n{help}", program.display()));
    let rest = &help[at..];
    let start = rest
        .find("[possible values: ")
        .unwrap_or_else(|| panic!("tidy: {flag} of {} lists no values", program.display()))
        + "[possible values: ".len();
    let end = rest[start..].find(']').expect("tidy: an unclosed list of values") + start;
    rest[start..end].split(',').map(|v| v.trim().to_owned()).collect()
}

/// Checks that `names` (a program's mechanisms) hold every one of
/// `Mechanism::ALL`, by its name, and nothing else but the mechanisms
/// the umbrella does not carry.
fn agrees(whose: &str, names: &[String]) {
    let missing: Vec<&str> =
        Mechanism::ALL.iter().map(|m| m.name()).filter(|n| !names.iter().any(|x| x == n)).collect();
    assert!(
        missing.is_empty(),
        "tidy: {whose} lacks the mechanism(s) {missing:?} of ipc_kit::Mechanism::ALL (it has {names:?})"
    );
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| Mechanism::from_name(n).is_none() && !NOT_IN_THE_UMBRELLA.iter().any(|(x, _)| x == n))
        .collect();
    assert!(
        unknown.is_empty(),
        "tidy: {whose} names {unknown:?}, which ipc_kit::Mechanism does not know: a second spelling of one of {:?}? \
         (if it is a mechanism the umbrella does not carry, add it to NOT_IN_THE_UMBRELLA in tests/tidy.rs with the reason)",
        Mechanism::ALL.iter().map(|m| m.name()).collect::<Vec<_>>()
    );
}

#[test]
fn stress_takes_the_umbrellas_mechanisms() {
    let names = possible_values(Path::new(env!("CARGO_BIN_EXE_ipc-kit-stress")), &[], "--mechanism");
    agrees("ipc-kit-stress --mechanism", &names);
}

#[test]
fn bench_takes_the_umbrellas_mechanisms() {
    let names = possible_values(&ipc_kit_tests::ipc_kit_bin(), &["bench"], "--mechanism");
    agrees("ipc-kit bench --mechanism", &names);
}

#[test]
fn faults_has_scenarios_for_every_mechanism() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipc-kit-faults"))
        .arg("--list")
        .output()
        .expect("tidy: run ipc-kit-faults --list");
    assert!(out.status.success(), "tidy: ipc-kit-faults --list failed");
    let list = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = Mechanism::ALL
        .iter()
        .map(|m| m.name())
        .filter(|n| !list.lines().any(|l| l.strip_prefix(n).is_some_and(|rest| rest.starts_with(": "))))
        .collect();
    assert!(
        missing.is_empty(),
        "tidy: ipc-kit-faults has no scenario named \"MECHANISM: ...\" for {missing:?}; its scenarios:\n{list}"
    );
}

#[test]
fn readme_mechanism_table_names_every_mechanism() {
    let readme = read("README.md");
    let Some((heading, body)) = section(&readme, "mechanism") else {
        panic!("tidy: README.md has no section whose heading contains \"Mechanism\"; add one with the mechanism table");
    };
    let table: String = body.lines().filter(|l| l.trim_start().starts_with('|')).collect::<Vec<_>>().join("\n");
    assert!(!table.is_empty(), "tidy: README.md's section {heading:?} has no table of the mechanisms");
    let missing: Vec<&str> =
        Mechanism::ALL.iter().map(|m| m.name()).filter(|n| !table.contains(&format!("`{n}`"))).collect();
    assert!(
        missing.is_empty(),
        "tidy: the table of README.md's section {heading:?} does not name the mechanism(s) {missing:?} of \
         ipc_kit::Mechanism::ALL; name each in backticks as the programs do (`ipc-kit bench --mechanism NAME`), \
         e.g. `{}`",
        missing[0]
    );
}

#[test]
fn the_checks_read_what_they_should() {
    // The helpers themselves, on small texts, so that a check cannot pass
    // by reading nothing.
    let main_rs = "let result = match task {\n    \"test\" => test(rest),\n    \"ci\" => a()\n        .and_then(b),\n    _ => {\n        \"nope\" => x,\n";
    assert_eq!(xtask_commands(main_rs), ["test", "ci"]);
    let md = "# A\n## Layout\nxtask test\n```\n# not a heading\n```\n### Sub\nlint\n## Next\nfuzz\n";
    let (heading, body) = section(md, "layout").expect("the section");
    assert_eq!(heading, "## Layout");
    assert!(has_word(body, "test") && has_word(body, "lint") && !has_word(body, "fuzz"));
    assert!(!has_word("test-x", "test") && !has_word("xtest", "test") && has_word("(test)", "test"));
}
