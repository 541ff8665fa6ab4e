//! End to end: the real `keywardd` and `keyward` (and the `tables_api` example) on temporary sockets and
//! data directories, started and driven by the support library `keyward-tests` (`tests/src/lib.rs`). One
//! module per area; each module's own documentation says what it covers.
//!
//! One test binary, not one per file (ripgrep's habit: `autotests = false` and a single `[[test]]` in
//! tests/Cargo.toml), because every binary links the whole client, protocol and tokio stack again.
//! Measured on 2 cores, the 15 files as 15 binaries and then as modules of this one: 372 MB of test
//! binaries became 83 MB; a rebuild after a change to tests/src/lib.rs went from 3.8–8.4 s to 2.1–3.1 s,
//! building this package's tests from scratch from 29–36 s to 9–14 s, and `cargo test -p keyward-tests`
//! from 67–80 s to 49–57 s, since the files with one long test (crash, hostile, faults) no longer run one
//! binary at a time. A change to one test file now rebuilds all of them: 1.3–2.1 s instead of 0.5–0.8 s.
//! One area runs alone with `cargo test -p keyward-tests --test e2e crash::`.
//!
//! The modules share one process, so no test may change what is process-wide: environment variables,
//! the current directory, the umask, signal dispositions. A test gives its daemon or CLI settings on that
//! child's own command line and environment (`Daemon::start_with_env`, `Command::env`), never through
//! this process's. A test that needs a runtime or other shared resource keeps it in its module
//! (`http::RUNTIME`).

use std::collections::BTreeSet;
use std::path::Path;

mod cli_key_path;
mod cli_lifecycle;
mod cli_stats;
mod crash;
mod faults;
mod fleet;
mod fleet_faults;
mod forward_auth;
mod hardening;
mod hostile;
mod http;
mod layering;
mod lifecycle;
mod limits;
mod operations;
mod persistence;
mod protocol;
mod races;
mod secrets;

/// With `autotests = false` (tests/Cargo.toml), a file in this folder that this root does not name is
/// never compiled: its tests would silently never run.
#[test]
fn every_file_in_the_folder_is_a_module_of_this_binary() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let root = std::fs::read_to_string(folder.join("e2e.rs")).expect("tests/tests/e2e.rs");
    let declared: BTreeSet<&str> =
        root.lines().filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';')).collect();
    let files: Vec<String> = std::fs::read_dir(&folder)
        .expect("tests/tests")
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "e2e.rs")
        .collect();
    let forgotten: Vec<String> = files
        .iter()
        .filter(|name| !declared.contains(name.strip_suffix(".rs").unwrap_or(name)))
        .map(|name| format!("tests/tests/{name} (add `mod {};` to tests/tests/e2e.rs)", name.trim_end_matches(".rs")))
        .collect();
    assert!(forgotten.is_empty(), "not modules of the e2e test binary, so never run:\n{}", forgotten.join("\n"));
}
