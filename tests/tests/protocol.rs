//! The wire protocol against a live daemon: handshake, pipelining, socket roles, and abuse that must get an
//! error reply or a closed connection while every other client keeps being served.

use keyward_protocol::{codec, Secret};
use keyward_protocol::{
    ErrorCode, ExpirySpec, HelloReply, Reply, Request, VerifyCode, VerifyRequest, PROTOCOL_VERSION,
};
use keyward_tests::{Daemon, RawConn};

fn create_token(daemon: &Daemon) -> Secret {
    daemon.admin().create("ws1", &["read:tables"], ExpirySpec::Never).token
}

fn verify_request(token: &Secret) -> Request {
    Request::Verify(VerifyRequest::new(token.clone()))
}

fn assert_valid(conn: &mut RawConn, token: &Secret) {
    assert_eq!(conn.verify(token, None, None).code, VerifyCode::Valid);
}

#[test]
fn unknown_version_is_refused_and_closed() {
    let daemon = Daemon::start();
    let mut conn = RawConn::open(&daemon.verify_socket()).unwrap();
    match conn.hello(PROTOCOL_VERSION + 1).unwrap() {
        HelloReply::Rejected(error) => {
            assert_eq!(error.code, ErrorCode::UnsupportedVersion);
            assert!(error.message.contains(&format!("version {PROTOCOL_VERSION}")), "{}", error.message);
        }
        other => panic!("accepted an unknown version: {other:?}"),
    }
    assert!(conn.is_closed());
}

#[test]
fn abuse_gets_an_error_or_a_close_and_others_keep_being_served() {
    let daemon = Daemon::start();
    let token = create_token(&daemon);
    let mut good = RawConn::connect(&daemon.verify_socket()).unwrap();
    assert_valid(&mut good, &token);

    // A 4 GiB length prefix, before and after the handshake.
    let mut huge = RawConn::open(&daemon.verify_socket()).unwrap();
    huge.send_raw(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    match codec::decode::<HelloReply>(&huge.read_payload().unwrap().unwrap()).unwrap() {
        HelloReply::Rejected(error) => assert_eq!(error.code, ErrorCode::BadFrame),
        other => panic!("{other:?}"),
    }
    assert!(huge.is_closed());
    let mut huge = RawConn::connect(&daemon.verify_socket()).unwrap();
    huge.send_raw(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let reply = huge.read_reply().expect("an error reply before the close");
    assert!(matches!(reply.reply, Reply::Error(ref e) if e.code == ErrorCode::BadFrame), "{reply:?}");
    assert!(huge.is_closed());
    assert_valid(&mut good, &token);

    // Garbage instead of a handshake.
    let mut garbage = RawConn::open(&daemon.verify_socket()).unwrap();
    garbage.send_raw(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x99]).unwrap();
    match codec::decode::<HelloReply>(&garbage.read_payload().unwrap().unwrap()).unwrap() {
        HelloReply::Rejected(error) => assert_eq!(error.code, ErrorCode::BadFrame),
        other => panic!("{other:?}"),
    }
    assert!(garbage.is_closed());

    // A well-framed but undecodable request: an error naming its id, and the connection stays usable.
    let mut confused = RawConn::connect(&daemon.verify_socket()).unwrap();
    confused.send(&[42, 0xff, 0xff, 0xff]).unwrap();
    let reply = confused.read_reply().unwrap();
    assert_eq!(reply.id, 42);
    assert!(matches!(reply.reply, Reply::Error(ref e) if e.code == ErrorCode::BadFrame), "{reply:?}");
    assert_valid(&mut confused, &token);

    // A truncated frame followed by a half-close: answered (or closed), never hung.
    let mut truncated = RawConn::connect(&daemon.verify_socket()).unwrap();
    truncated.send_raw(&[0, 0, 0, 50, 1, 2, 3]).unwrap();
    truncated.stream.shutdown(std::net::Shutdown::Write).unwrap();
    if let Some(reply) = truncated.read_reply() {
        assert!(matches!(reply.reply, Reply::Error(ref e) if e.code == ErrorCode::BadFrame), "{reply:?}");
    }
    assert!(truncated.is_closed());

    // Random bytes of every length up to a few hundred, each on its own connection.
    for len in (1..400).step_by(37) {
        let mut random = RawConn::open(&daemon.verify_socket()).unwrap();
        let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(151).wrapping_add(len as u8)).collect();
        let _ = random.send_raw(&bytes);
        let _ = random.stream.shutdown(std::net::Shutdown::Write);
        let _ = random.is_closed();
    }

    assert_valid(&mut good, &token);
    assert_valid(&mut RawConn::connect(&daemon.verify_socket()).unwrap(), &token);
}

#[test]
fn pipelined_requests_are_all_answered_with_their_ids() {
    let daemon = Daemon::start();
    let token = create_token(&daemon);
    let mut conn = RawConn::connect(&daemon.verify_socket()).unwrap();
    // The last character mistyped (never into itself: that would be the token).
    let text = token.expose();
    let typo = if text.ends_with('x') { 'y' } else { 'x' };
    let wrong = Secret::new(format!("{}{typo}", &text[..text.len() - 1]));
    let mut sent = std::collections::HashMap::new();
    for i in 0..200u64 {
        let (request, expected) = match i % 3 {
            0 => (verify_request(&token), VerifyCode::Valid),
            1 => (verify_request(&wrong), VerifyCode::Malformed),
            _ => (verify_request(&Secret::new("")), VerifyCode::Missing),
        };
        conn.send_request_with_id(1000 + i, request);
        sent.insert(1000 + i, expected);
    }
    for _ in 0..200 {
        let frame = conn.read_reply().unwrap();
        let expected = sent.remove(&frame.id).expect("each id answered once");
        match frame.reply {
            Reply::Verify(answer) => assert_eq!(answer.code, expected),
            other => panic!("{other:?}"),
        }
    }
    assert!(sent.is_empty());
}

#[test]
fn management_is_refused_on_the_verify_socket() {
    let daemon = Daemon::start();
    let mut conn = RawConn::connect(&daemon.verify_socket()).unwrap();
    match conn.request(Request::Get { id: "AAAAAAAAAAAA".into() }) {
        Reply::Error(error) => assert_eq!(error.code, ErrorCode::WrongSocket),
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.request(Request::Ping), Reply::Pong, "the connection stays usable");
}

#[test]
fn sockets_have_their_modes() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start();
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(daemon.verify_socket()), 0o660);
    assert_eq!(mode(daemon.admin_socket()), 0o600);
    assert_eq!(mode(daemon.data_dir()), 0o700);
}
