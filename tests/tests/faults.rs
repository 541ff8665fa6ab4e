//! Disk faults: a data directory that fills up. Management calls fail with a clear STORAGE error and
//! change nothing, verifies keep working from memory, the daemon stays up, and once the disk has room
//! and the daemon restarts, everything acknowledged is there and writes work again.
//!
//! Needs a small tmpfs, which only root can mount; elsewhere the test says so and does nothing.

use std::process::Command;

use keyward_protocol::{CreateRequest, ErrorCode, ExpirySpec, Reply, Request, VerifyCode};
use keyward_tests::Daemon;

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(path.to_owned()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_changes_keeps_verifying_and_loses_nothing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let mut daemon = Daemon::start();
    daemon.stop();
    let Some(disk) = Tmpfs::mount(&daemon.data_dir(), "1m") else {
        eprintln!("skipped: this machine cannot mount a tmpfs");
        return;
    };
    daemon.restart();
    let mut admin = daemon.admin();
    let first = admin.create("ws1", &["read:all"], ExpirySpec::Never);
    let blob = "x".repeat(4000);
    let mut acknowledged = vec![first.key.id.clone()];
    let refusal = loop {
        let mut request = CreateRequest::new("ws1", "filler key", vec!["read:all".into()]);
        request.metadata.insert("blob".into(), blob.clone());
        match admin.request(Request::Create(request)) {
            Reply::Created(created) => acknowledged.push(created.key.id),
            Reply::Error(error) => break error,
            other => panic!("{other:?}"),
        }
        assert!(acknowledged.len() < 1000, "a 1 MiB disk never filled");
    };
    assert_eq!(refusal.code, ErrorCode::Storage);
    assert!(refusal.message.contains("No space left on device"), "{}", refusal.message);
    assert!(!refusal.message.contains("Os {"), "a clear message, not a debug dump: {}", refusal.message);
    // Reads and verifies go on from memory; the refused change is not visible.
    assert_eq!(daemon.verifier().verify(&first.token, None, None).code, VerifyCode::Valid);
    match admin.request(Request::List(keyward_protocol::ListRequest {
        workspace: "ws1".into(),
        after: None,
        limit: 1000,
    })) {
        Reply::Keys(page) => assert_eq!(page.keys.len(), acknowledged.len()),
        other => panic!("{other:?}"),
    }

    // The fault clears; after a restart nothing acknowledged is missing and writes work again.
    disk.resize("64m");
    drop(admin);
    daemon.restart();
    let mut admin = daemon.admin();
    for id in &acknowledged {
        assert!(matches!(admin.get(id), Reply::Key(_)), "key {id} lost");
    }
    admin.create("ws1", &["read:all"], ExpirySpec::Never);
    assert_eq!(daemon.verifier().verify(&first.token, None, None).code, VerifyCode::Valid);
    daemon.stop();
}
