//! No token leaks: a whole CLI tour against a daemon logging at trace level, then every byte the tour left
//! behind is searched for every token and every token's secret part.
//!
//! Searched: the daemon's log (its stderr), every CLI invocation's stderr, every CLI invocation's stdout
//! except the answers that exist to show a token (`create` and `regenerate`; `import` is searched too, since
//! it never needs to repeat the token it was given), every answer of the forward-auth endpoint to requests
//! carrying the tokens in every way a proxy may send them, and every file under the data directory, raw
//! bytes, recursively. A keyward token's secret part is its 32 characters at bytes 21..53; an imported token is a
//! secret as a whole.
//!
//! So that the test cannot pass vacuously, it checks that the log really holds trace output, that each
//! keyward token *is* found in the one output allowed to show it, and that the data directory holds files.

use std::path::{Path, PathBuf};
use std::process::Output;

use keyward_tests::proxy::{get, Address};
use keyward_tests::{describe, ConfigFile, Daemon};
use serde_json::Value;

/// Where a keyward token's secret part lies: after `kw_live_`, the 12-character id and `_`.
const SECRET: std::ops::Range<usize> = 21..53;

/// The subcommands, to tell which one a run's arguments name.
const COMMANDS: &[&str] = &[
    "create",
    "list",
    "show",
    "edit",
    "regenerate",
    "deactivate",
    "activate",
    "revoke",
    "import",
    "verify",
    "audit",
    "account",
    "credits",
    "usage",
    "ping",
];

/// One CLI run of the tour.
struct Run {
    /// `#N command`, for messages: the arguments themselves may hold a token.
    label: String,
    output: Output,
    /// `create` and `regenerate`: stdout is where the token is meant to be.
    shows_token: bool,
}

/// The tour so far: the daemon, every run, and every token that came into existence.
struct Tour {
    daemon: Daemon,
    runs: Vec<Run>,
    /// Tokens minted by keyward (their secret part is searched for too).
    minted: Vec<String>,
    /// Tokens from elsewhere, secret as a whole.
    imported: Vec<String>,
}

impl Tour {
    /// Runs `keyward ARGS` with `stdin`, expecting exit status `code`, and records the run.
    fn run(&mut self, args: &[&str], stdin: &str, code: i32) -> &Output {
        let output = self.daemon.cli_with_stdin(args, stdin);
        assert_eq!(output.status.code(), Some(code), "keyward {args:?}: {}", describe(&output));
        let command = args.iter().find(|arg| COMMANDS.contains(arg)).copied().expect("a subcommand");
        let shows_token = matches!(command, "create" | "regenerate");
        let label = format!("#{} {command}", self.runs.len());
        self.runs.push(Run { label, output, shows_token });
        &self.runs.last().expect("just pushed").output
    }

    /// `keyward --json ARGS`, parsed.
    fn json(&mut self, args: &[&str], stdin: &str, code: i32) -> Value {
        let output = self.run(&[&["--json"], args].concat(), stdin, code);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("no JSON from {args:?}: {e}"))
    }

    /// `create --json`; remembers the token.
    fn create(&mut self, workspace: &str, scope: &str, extra: &[&str]) -> (String, String) {
        let args = [&["create", "--workspace", workspace, "--name", "tour key", "--scope", scope], extra].concat();
        let created = self.json(&args, "", 0);
        let token = created["token"].as_str().expect("a token").to_owned();
        self.minted.push(token.clone());
        (token, created["id"].as_str().expect("an id").to_owned())
    }

    /// `verify -` with the token on stdin; returns the code.
    fn verify(&mut self, token: &str, extra: &[&str], code: i32) -> String {
        let answer = self.json(&[&["verify"], extra, &["-"]].concat(), &format!("{token}\n"), code);
        answer["code"].as_str().expect("a code").to_owned()
    }

    /// Every secret to search for, with a name for the failure message.
    fn needles(&self) -> Vec<(String, String)> {
        let mut needles = Vec::new();
        for (i, token) in self.minted.iter().enumerate() {
            needles.push((format!("minted token #{i}"), token.clone()));
            needles.push((format!("secret part of minted token #{i}"), token[SECRET].to_owned()));
        }
        for (i, token) in self.imported.iter().enumerate() {
            needles.push((format!("imported token #{i}"), token.clone()));
        }
        needles
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Every regular file under `dir`, recursively, without following symbolic links.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let entry = entry.expect("a directory entry");
            let kind = entry.file_type().expect("a file type");
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// The token in a text answer of `create` or `regenerate`: the line indented by four spaces.
fn token_in_text(stdout: &[u8]) -> String {
    let stdout = String::from_utf8_lossy(stdout);
    let line =
        stdout.lines().find(|line| line.starts_with("    kw_")).unwrap_or_else(|| panic!("no token in {stdout}"));
    line.trim().to_owned()
}

#[test]
fn no_token_or_secret_appears_in_logs_outputs_or_the_data_directory() {
    let http = Address::loopback(keyward_tests::proxy::free_port());
    let config = ConfigFile::new(&format!("[http]\nlisten = [\"{}\"]\n", http.listen()));
    let config_path = config.path().to_str().expect("a UTF-8 path");
    let daemon = Daemon::start_with_env(&[("KEYWARD_LOG", "trace")], &["--config", config_path]);
    let mut tour = Tour { daemon, runs: Vec::new(), minted: Vec::new(), imported: Vec::new() };

    // Keys of every kind.
    let (live, live_id) = tour.create("acme", "read:tables", &["--meta", "team=billing", "--credits", "100"]);
    let (test, test_id) = tour.create("acme", "write:all", &["--env", "test", "--expires", "never"]);
    assert!(test.starts_with("kw_test_"));
    let (admin, admin_id) = tour.create("beta", "admin", &["--role", "admin", "--rate-limit", "10/min"]);
    let output = tour.run(&["create", "--workspace", "beta", "--name", "text key", "--scope", "read:all"], "", 0);
    let text_token = token_in_text(&output.stdout);
    tour.minted.push(text_token.clone());

    // Each verifies, and each is refused a scope it lacks; one token is given on the command line.
    for token in [&live, &test, &text_token] {
        assert_eq!(tour.verify(token, &[], 0), "VALID");
        assert_eq!(tour.verify(token, &["--scope", "admin"], 1), "INSUFFICIENT_SCOPE");
    }
    assert_eq!(tour.verify(&admin, &["--scope", "write:tables", "--workspace", "beta"], 0), "VALID");
    assert_eq!(tour.verify(&admin, &["--workspace", "acme"], 1), "WRONG_WORKSPACE");
    tour.run(&["verify", "--scope", "read:tables", "--limit", "exports", &live], "", 0);
    // A mistyped last character (never the one it replaces: that would be the token itself).
    let typo = if live.ends_with('x') { 'y' } else { 'x' };
    tour.run(&["verify", &format!("{}{typo}", &live[..58])], "", 1);

    // Looking around.
    for args in [&["list", "--workspace", "acme"][..], &["list", "--workspace", "beta"], &["show", &live_id]] {
        tour.run(args, "", 0);
        tour.json(args, "", 0);
    }

    // Changes: edit, regenerate without and with grace.
    tour.json(&["edit", &live_id, "--name", "renamed", "--meta", "owner=ops", "--limit", "exports=5/h"], "", 0);
    tour.run(&["--actor", "alice", "edit", &test_id, "--description", "edited in the tour"], "", 0);
    let regenerated = tour.json(&["regenerate", &live_id], "", 0);
    let live2 = regenerated["token"].as_str().expect("a new token").to_owned();
    tour.minted.push(live2.clone());
    let output = tour.run(&["regenerate", &test_id, "--grace", "1h"], "", 0);
    let test2 = token_in_text(&output.stdout);
    tour.minted.push(test2.clone());
    assert_eq!(tour.verify(&live, &[], 1), "NOT_FOUND");
    assert_eq!(tour.verify(&live2, &[], 0), "VALID");
    assert_eq!(tour.verify(&test, &[], 0), "VALID", "inside its grace window");
    assert_eq!(tour.verify(&test2, &[], 0), "VALID");

    // Imports: a foreign token by stdin, a legacy one on the command line, and an account for it.
    let foreign = "sk_prod_9c1d7e3f5a2b4c6d8e0f1a2b3c4d5e6f".to_owned();
    let legacy = "u42.personal.Qm8sLx2Vt7Rp".to_owned();
    tour.imported.extend([foreign.clone(), legacy.clone()]);
    let import = ["import", "--workspace", "acme", "--name", "imported key", "--scope", "read:all"];
    tour.json(&[&import[..], &["-"]].concat(), &format!("{foreign}\n"), 0);
    tour.run(&[&import[..], &["--legacy", "--account", "acct-1", &legacy]].concat(), "", 0);
    tour.run(
        &["--actor", "migration job", "account", "set", "acct-1", "--workspace", "acme", "--workspace", "beta"],
        "",
        0,
    );
    assert_eq!(tour.verify(&foreign, &["--workspace", "acme"], 0), "VALID");
    assert_eq!(tour.verify(&legacy, &["--workspace", "beta"], 0), "VALID");
    tour.run(&["verify", &foreign], "", 0);
    let again = tour.run(&[&import[..], &["-"]].concat(), &format!("{foreign}\n"), 2).stderr.clone();
    assert!(String::from_utf8_lossy(&again).contains("CONFLICT"));
    tour.run(&["list", "--legacy"], "", 0);
    tour.json(&["list", "--legacy", "--account", "acct-1"], "", 0);
    tour.json(&["account", "show", "acct-1"], "", 0);

    // Suspend and resume, revoke, credits.
    tour.run(&["deactivate", &test_id], "", 0);
    assert_eq!(tour.verify(&test2, &[], 1), "INACTIVE");
    tour.json(&["activate", &test_id], "", 0);
    assert_eq!(tour.verify(&test2, &[], 0), "VALID");
    tour.run(&["revoke", &admin_id], "", 0);
    assert_eq!(tour.verify(&admin, &[], 1), "REVOKED");
    tour.json(&["credits", &live_id, "--add", "5"], "", 0);
    tour.run(&["credits", &live_id, "--set", "7"], "", 0);

    // Reading back: audit and usage, as text and JSON.
    for args in [&["audit"][..], &["usage", &live_id], &["usage", "--workspace", "acme"]] {
        tour.run(args, "", 0);
        tour.json(args, "", 0);
    }
    tour.run(&["ping"], "", 0);

    // The forward-auth endpoint, asked about every token the way proxies ask: valid, refused, malformed,
    // doubled, in a parameter that is not enabled, in the original URI.
    let mut answers = Vec::new();
    for token in [&live2, &test2, &text_token, &foreign, &legacy, &admin] {
        let bearer = format!("Bearer {token}");
        let typo = format!("Bearer {token}x");
        let in_uri = format!("/v1/tables?api_key={token}");
        for headers in [
            vec![("Authorization", bearer.as_str())],
            vec![("X-API-Key", token.as_str()), ("X-Keyward-Scope", "admin")],
            vec![("Authorization", typo.as_str())],
            vec![("Authorization", bearer.as_str()), ("X-API-Key", token.as_str())],
            vec![("X-Forwarded-Uri", in_uri.as_str())],
            vec![("Authorization", bearer.as_str()), ("X-Keyward-Cost", token.as_str())],
        ] {
            answers.push(get(&http, "/auth", &headers).to_string());
        }
    }
    let granted = answers.iter().filter(|answer| answer.starts_with("HTTP/1.1 200")).count();
    assert!(granted >= 4, "the endpoint granted the valid tokens: {granted} of {} answers", answers.len());

    // A graceful stop flushes everything the daemon holds in memory to the data directory.
    let status = tour.daemon.stop();
    assert!(status.success(), "keywardd stopped with {status}");

    let log = tour.daemon.log_bytes();
    assert!(!log.is_empty(), "the daemon logged nothing");
    assert!(contains(&log, b"TRACE"), "KEYWARD_LOG=trace did not reach the log:\n{}", String::from_utf8_lossy(&log));
    let files = files_under(&tour.daemon.data_dir());
    assert!(!files.is_empty(), "the data directory is empty");
    let data: Vec<(PathBuf, Vec<u8>)> =
        files.into_iter().map(|path| (path.clone(), std::fs::read(&path).expect("a data file"))).collect();

    // The search would find a token where one is: each minted token is in the output that showed it.
    for token in &tour.minted {
        let shown = tour.runs.iter().filter(|run| run.shows_token && contains(&run.output.stdout, token.as_bytes()));
        assert_eq!(shown.count(), 1, "a minted token should appear in exactly one create or regenerate answer");
    }

    let mut leaks = Vec::new();
    for (what, needle) in tour.needles() {
        let needle = needle.as_bytes();
        if contains(&log, needle) {
            leaks.push(format!("{what} in the daemon's log"));
        }
        for run in &tour.runs {
            if contains(&run.output.stderr, needle) {
                leaks.push(format!("{what} on the stderr of keyward run {}", run.label));
            }
            if !run.shows_token && contains(&run.output.stdout, needle) {
                leaks.push(format!("{what} on the stdout of keyward run {}", run.label));
            }
        }
        if answers.iter().any(|answer| contains(answer.as_bytes(), needle)) {
            leaks.push(format!("{what} in an answer of the forward-auth endpoint"));
        }
        for (path, bytes) in &data {
            if contains(bytes, needle) {
                leaks.push(format!("{what} in {}", path.display()));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
