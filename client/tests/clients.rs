//! Both clients against the fake daemon in `support`: round trips, pipelining with out-of-order replies,
//! timeouts, and reconnecting after the daemon drops a connection.

mod support;

use std::time::{Duration, Instant};

use keyward_client::{
    BlockingClient, Client, ClientError, CreateRequest, Environment, ErrorCode, ExpirySpec, KeyStatus, Reply, Request,
    VerifyCode, VerifyRequest,
};
use keyward_protocol::lifecycle::Role;
use keyward_protocol::Limits;
use support::{canned, good_token, valid_in, Action, FakeDaemon, KEY_ID};

/// Short enough to keep the tests fast, long enough that a loaded machine answers a ping within it.
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

fn create_request(name: &str) -> CreateRequest {
    CreateRequest {
        workspace: "acme".into(),
        name: name.into(),
        description: Some("for CI".into()),
        scopes: vec!["read:all".into()],
        expires: ExpirySpec::Never,
        env: Environment::Test,
        role: Role::Member,
        metadata: Default::default(),
        limits: Limits::default(),
    }
}

fn verify_in(workspace: &str) -> VerifyRequest {
    VerifyRequest { workspace: Some(workspace.into()), ..VerifyRequest::new(good_token()) }
}

/// Answers every request the canned way, except what `first` says for the first request on the first
/// connection.
fn first_request_on_first_connection(
    first: impl Fn(&Request) -> Option<Action> + Send + Sync + 'static,
) -> impl Fn(usize, &Request) -> Action + Send + Sync + 'static {
    let seen = std::sync::atomic::AtomicBool::new(false);
    move |connection, request| {
        if connection == 0 && !seen.swap(true, std::sync::atomic::Ordering::SeqCst) {
            if let Some(action) = first(request) {
                return action;
            }
        }
        canned(connection, request)
    }
}

// ---- Blocking client -------------------------------------------------------------------------------------

#[test]
fn blocking_round_trip() {
    let daemon = FakeDaemon::start(canned);
    let mut client = BlockingClient::connect(daemon.socket()).unwrap();
    client.ping().unwrap();
    let answer = client.verify(verify_in("acme")).unwrap();
    assert_eq!(answer.code, VerifyCode::Valid);
    assert_eq!(answer.key.unwrap().id, KEY_ID);

    let created = client.create(create_request("CI deploy")).unwrap();
    assert_eq!(created.token, good_token());
    assert_eq!((created.key.env, created.key.description.as_deref()), (Environment::Test, Some("for CI")));

    let ids: Vec<String> = client.list("acme").unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(ids, [KEY_ID, "BBBBBBBBBBBB", "CCCCCCCCCCCC"], "every page, in order");
    assert_eq!(client.get(KEY_ID).unwrap().status, KeyStatus::Active);
    assert_eq!(client.revoke(KEY_ID).unwrap().status, KeyStatus::Revoked);
    assert!(matches!(client.call(Request::Ping).unwrap(), Reply::Pong));
    assert_eq!(daemon.connections(), 1, "one connection for everything");
}

#[test]
fn blocking_error_replies_are_refusals() {
    let daemon = FakeDaemon::start(canned);
    let mut client = BlockingClient::connect(daemon.socket()).unwrap();
    let error = client.create(create_request("x")).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidArgument));
    assert_eq!(error.to_string(), "INVALID_ARGUMENT: name must be 3 to 50 characters");
    assert!(matches!(client.get("ZZZZZZZZZZZZ"), Err(ClientError::Refused(_))));
    client.ping().expect("a refusal leaves the connection usable");
    assert_eq!(daemon.connections(), 1);
}

#[test]
fn blocking_connect_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody.sock");
    let error = BlockingClient::connect(&missing).unwrap_err();
    assert!(matches!(&error, ClientError::Connect { path, .. } if *path == missing));

    let daemon = FakeDaemon::start_rejecting();
    let error = BlockingClient::connect(daemon.socket()).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::UnsupportedVersion));
    assert!(matches!(error, ClientError::Rejected(_)));
}

#[test]
fn blocking_timeout_then_a_fresh_connection() {
    let daemon = FakeDaemon::start(first_request_on_first_connection(|_| Some(Action::Ignore)));
    let mut client = BlockingClient::connect_with_timeout(daemon.socket(), SHORT_TIMEOUT).unwrap();
    let started = Instant::now();
    assert!(matches!(client.ping(), Err(ClientError::Timeout(_))));
    assert!(started.elapsed() < SHORT_TIMEOUT * 10);
    client.ping().expect("the next call connects again");
    assert_eq!(daemon.connections(), 2, "the timed-out connection was dropped");
}

#[test]
fn blocking_reconnects_after_the_daemon_hangs_up() {
    let daemon = FakeDaemon::start(first_request_on_first_connection(|_| Some(Action::AnswerThenHangUp(Reply::Pong))));
    let mut client = BlockingClient::connect(daemon.socket()).unwrap();
    client.ping().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    client.ping().expect("a closed idle connection is replaced before sending");
    client.create(create_request("CI deploy")).expect("even a create goes out on the new connection");
    assert_eq!(daemon.connections(), 2);
}

#[test]
fn blocking_retries_a_read_lost_mid_request_but_never_a_create() {
    let daemon = FakeDaemon::start(first_request_on_first_connection(|_| Some(Action::HangUp)));
    let mut client = BlockingClient::connect(daemon.socket()).unwrap();
    client.get(KEY_ID).expect("a get is retried on a new connection");
    assert_eq!((daemon.connections(), daemon.requests()), (2, 2));

    let daemon = FakeDaemon::start(first_request_on_first_connection(|_| Some(Action::HangUp)));
    let mut client = BlockingClient::connect(daemon.socket()).unwrap();
    assert!(matches!(client.create(create_request("CI deploy")), Err(ClientError::Closed)));
    assert_eq!(daemon.requests(), 1, "the create was sent once");
    let paid = client.verify(verify_in("acme"));
    assert!(paid.is_ok(), "the next call connects again: {paid:?}");
    assert_eq!(daemon.connections(), 2);
}

// ---- Async client ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_round_trip() {
    let daemon = FakeDaemon::start(canned);
    let client = Client::connect(daemon.socket()).await.unwrap();
    assert_eq!(daemon.connections(), 2, "connect opens the whole pool");
    client.ping().await.unwrap();
    assert_eq!(client.verify(verify_in("acme")).await.unwrap().code, VerifyCode::Valid);
    assert_eq!(client.verify(verify_in("other")).await.unwrap().code, VerifyCode::WrongWorkspace);
    assert_eq!(client.create(create_request("CI deploy")).await.unwrap().token, good_token());
    assert_eq!(client.list("acme").await.unwrap().len(), 3);
    assert_eq!(client.get(KEY_ID).await.unwrap().id, KEY_ID);
    assert_eq!(client.revoke(KEY_ID).await.unwrap().status, KeyStatus::Revoked);
    let refused = client.create(create_request("x")).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidArgument));
    assert_eq!(daemon.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_pipelines_many_tasks_and_matches_out_of_order_replies() {
    let daemon = FakeDaemon::start_reversing(|_, request| match request {
        Request::Verify(verify) => Action::Answer(Reply::Verify(valid_in(verify.workspace.as_deref().unwrap()))),
        _ => Action::Answer(Reply::Pong),
    });
    let client = Client::builder(daemon.socket()).pool_size(1).build();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let workspace = format!("ws{i}");
                let answer = client.verify(verify_in(&workspace)).await.unwrap();
                assert_eq!(answer.key.unwrap().workspace, workspace, "task {i} got another task's answer");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(daemon.connections(), 1, "all 100 shared one connection");
    assert_eq!(daemon.requests(), 100);
    assert!(daemon.reordered_batches() > 0, "the daemon never answered out of order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_spreads_over_the_pool_and_respects_max_in_flight() {
    let daemon = FakeDaemon::start(canned);
    let client = Client::builder(daemon.socket()).pool_size(3).max_in_flight(1).build();
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.verify(verify_in("acme")).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().code, VerifyCode::Valid);
    }
    assert_eq!(daemon.connections(), 3, "opened lazily, one per slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_timeout_forgets_the_request_and_ignores_its_late_reply() {
    // The Pong for the first request comes after its timeout but while the next request waits.
    let late = SHORT_TIMEOUT + SHORT_TIMEOUT / 2;
    let daemon =
        FakeDaemon::start(first_request_on_first_connection(move |_| Some(Action::AnswerAfter(late, Reply::Pong))));
    let client = Client::builder(daemon.socket()).pool_size(1).request_timeout(SHORT_TIMEOUT).build();
    let started = Instant::now();
    assert!(matches!(client.ping().await, Err(ClientError::Timeout(_))));
    assert!(started.elapsed() < late);
    // On the same connection, the daemon answers this one right after the late Pong.
    let answer = client.verify(verify_in("acme")).await.expect("the late Pong is not taken for this answer");
    assert_eq!(answer.code, VerifyCode::Valid);
    assert_eq!(daemon.connections(), 1, "a timeout does not cost the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_hang_up_fails_pending_requests_and_the_next_request_reconnects() {
    let daemon = FakeDaemon::start(first_request_on_first_connection(|_| Some(Action::HangUp)));
    let client = Client::builder(daemon.socket()).pool_size(1).build();
    let started = Instant::now();
    assert!(matches!(client.ping().await, Err(ClientError::Closed)));
    assert!(started.elapsed() < Duration::from_secs(2), "failed at once, not by timeout");
    client.ping().await.expect("reopened on the next request");
    assert_eq!(daemon.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_reconnects_after_the_daemon_drops_an_idle_connection() {
    let daemon = FakeDaemon::start(first_request_on_first_connection(|_| Some(Action::AnswerThenHangUp(Reply::Pong))));
    let client = Client::builder(daemon.socket()).pool_size(1).build();
    client.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.create(create_request("CI deploy")).await.expect("sent on a new connection");
    assert_eq!(daemon.connections(), 2);
}

#[tokio::test]
async fn async_connect_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody.sock");
    let error = Client::connect(&missing).await.unwrap_err();
    assert!(error.to_string().contains(missing.to_str().unwrap()), "{error}");
    let lazy = Client::builder(&missing).build();
    assert!(matches!(lazy.ping().await, Err(ClientError::Connect { .. })));

    let daemon = FakeDaemon::start_rejecting();
    let error = Client::connect(daemon.socket()).await.unwrap_err();
    assert!(matches!(error, ClientError::Rejected(_)));
}
