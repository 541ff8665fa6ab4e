//! Hostile clients against a live daemon while a well-behaved client keeps measuring its answers: floods,
//! slow frames, huge length prefixes, random bytes, invalid enum tags, huge strings, request-id reuse,
//! half-closed sockets, and a client that never reads its replies. The daemon never crashes, its memory
//! stays bounded, and the good client keeps being served.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward_protocol::{
    codec, CreateRequest, ExpirySpec, RatePolicy, Reply, Request, RequestFrame, Secret, VerifyCode,
};
use keyward_tests::{Daemon, RawConn};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Frames a raw payload.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn handshaken(daemon: &Daemon) -> UnixStream {
    let conn = RawConn::connect(&daemon.verify_socket()).unwrap();
    conn.stream
}

#[test]
fn hostile_clients_do_not_hurt_a_good_one() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("keyward.toml");
    std::fs::write(&config, "[limits]\nmax_connections = 64\nframe_timeout_secs = 1\nidle_timeout_secs = 2\n").unwrap();
    let daemon = Daemon::start_with(&["--config", config.to_str().unwrap()]);
    let mut request = CreateRequest::new("ws1", "good key", vec!["read:all".into()]);
    request.expires = ExpirySpec::Never;
    request.limits.rate = RatePolicy::Unlimited;
    let token = match daemon.admin().request(Request::Create(request)) {
        Reply::Created(created) => created.token,
        other => panic!("{other:?}"),
    };
    let pid = daemon.pid();
    let rss_before = rss_kib(pid);

    // The good client verifies continuously on its own connection and counts its answers.
    let stop = Arc::new(AtomicBool::new(false));
    let good = {
        let (mut conn, token, stop) = (daemon.verifier(), token.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut answered = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(conn.verify(&token, None, None).code, VerifyCode::Valid, "the good client was refused");
                answered += 1;
            }
            answered
        })
    };

    // A connection flood beyond the limit: they wait at the door (or are closed idle), nobody crashes.
    let flood: Vec<UnixStream> = (0..100).filter_map(|_| UnixStream::connect(daemon.verify_socket()).ok()).collect();

    // 4 GiB length prefixes and random bytes, before and after the handshake.
    for round in 0..20u32 {
        if let Ok(mut raw) = UnixStream::connect(daemon.verify_socket()) {
            let _ = raw.write_all(&[0xff, 0xff, 0xff, 0xff]);
        }
        let mut raw = handshaken(&daemon);
        let noise: Vec<u8> =
            (0..512u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(round) >> 13) as u8).collect();
        let _ = raw.write_all(&noise);
    }

    // Valid frames with invalid enum tags, huge strings inside valid frames, and request-id reuse.
    let mut tags = handshaken(&daemon);
    for tag in [200u8, 250, 251] {
        tags.write_all(&framed(&[1, tag, 0, 0])).unwrap();
    }
    let mut conn = daemon.verifier();
    let huge = Secret::new("k".repeat(60_000));
    assert_eq!(conn.verify(&huge, None, None).code, VerifyCode::Malformed, "a 60 kB token is just malformed");
    for _ in 0..50 {
        conn.send_request_with_id(7, Request::Verify(keyward_protocol::VerifyRequest::new(token.clone())));
    }
    for _ in 0..50 {
        assert_eq!(conn.read_reply().unwrap().id, 7, "a reused id is answered every time");
    }

    // Half-closed sockets: a request then shutdown(write) still gets its answer.
    let mut half = daemon.verifier();
    half.send_request(Request::Ping);
    half.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(half.read_reply().unwrap().reply, Reply::Pong);

    // Slow-loris: frames that start and never finish.
    let slow: Vec<UnixStream> = (0..10)
        .map(|_| {
            let mut s = handshaken(&daemon);
            s.write_all(&[0, 0, 1, 0, 1]).unwrap();
            s
        })
        .collect();

    // A client that pipelines thousands of requests and never reads a reply: the daemon stops reading it
    // once its replies back up, instead of buffering without bound.
    let mut deaf = handshaken(&daemon);
    deaf.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let verify = codec::encode(&RequestFrame {
        id: 1,
        request: Request::Verify(keyward_protocol::VerifyRequest::new(token.clone())),
    })
    .unwrap();
    let frame = framed(&verify);
    let mut sent = 0usize;
    while sent < 200_000 && deaf.write_all(&frame).is_ok() {
        sent += 1;
    }

    std::thread::sleep(Duration::from_secs(3));
    let rss_during = rss_kib(pid);
    stop.store(true, Ordering::Relaxed);
    let answered = good.join().expect("the good client kept being served");
    assert!(answered > 100, "the good client was starved: {answered} answers");
    drop((flood, slow, deaf, tags));

    assert!(rss_during < rss_before + 64 * 1024, "memory grew from {rss_before} KiB to {rss_during} KiB");
    eprintln!("hostile: good client answered {answered} verifies; RSS {rss_before} KiB -> {rss_during} KiB; deaf client got {sent} frames in before the daemon stopped reading");
    assert_eq!(daemon.verifier().request(Request::Ping), Reply::Pong, "the daemon is still up");
}
