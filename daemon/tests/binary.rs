//! The `keywardd` binary's own command line (the daemon's behaviour is tested end to end in `tests/`).

use std::process::Command;

fn keywardd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keywardd"))
}

#[test]
fn version_and_help_print() {
    let output = keywardd().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("keywardd "));
    let help = keywardd().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--data-dir", "--socket", "--admin-socket"] {
        assert!(text.contains(flag), "help lists {flag}");
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let output = keywardd().arg("--no-such-flag").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn unusable_data_dir_refuses_to_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let output = keywardd()
        .arg("--data-dir")
        .arg(&file)
        .arg("--socket")
        .arg(dir.path().join("v.sock"))
        .arg("--admin-socket")
        .arg(dir.path().join("a.sock"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("keywardd: data directory"), "{stderr}");
}
