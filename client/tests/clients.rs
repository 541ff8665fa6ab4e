//! Both clients against the fake daemon in `support`: round trips, pipelining with out-of-order replies,
//! timeouts, and reconnecting after the daemon drops a connection.

mod support;

use std::time::{Duration, Instant};

use keyward_client::{
    AccountView, AuditQuery, BlockingClient, Client, ClientError, CreateRequest, CreditChange, Environment, ErrorCode,
    ExpirySpec, ImportRequest, KeyChanges, KeyStatus, Reply, Request, VerifyCode, VerifyRequest,
};
use keyward_protocol::lifecycle::{KeyOrigin, Role};
use keyward_protocol::{Limits, Secret};
use support::{canned, good_token, lifecycle, recording, valid_in, Action, FakeDaemon, Received, KEY_ID};

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

fn import_request(legacy_account: Option<&str>) -> ImportRequest {
    ImportRequest {
        token: Secret::new("sk_prod_3f9a1c7e2b8d4056a1c2e3f4"),
        workspace: "acme".into(),
        name: "migrated".into(),
        description: None,
        scopes: vec!["read:all".into()],
        role: Role::Member,
        expires: ExpirySpec::Never,
        metadata: Default::default(),
        limits: Limits::default(),
        legacy_account: legacy_account.map(Into::into),
    }
}

/// The actor label of each request received (`None` for one not inside an `As`), and the request inside.
fn labels(received: &Received) -> Vec<(Option<String>, Request)> {
    let requests = std::mem::take(&mut *received.lock().unwrap());
    requests
        .into_iter()
        .map(|request| match request {
            Request::As { actor, request } => (Some(actor), *request),
            other => (None, other),
        })
        .collect()
}

#[test]
fn blocking_lifecycle_helpers() {
    let (received, handler) = recording(lifecycle);
    let daemon = FakeDaemon::start(handler);
    let mut client = BlockingClient::connect(daemon.socket()).unwrap();
    let rename = KeyChanges { name: Some("renamed".into()), ..Default::default() };
    assert_eq!(client.edit(KEY_ID, rename.clone()).unwrap().name, "renamed");
    let fresh = client.regenerate(KEY_ID, 60).unwrap();
    assert_eq!((fresh.token, fresh.key.previous_token_until), (good_token(), Some(support::CREATED_AT + 60)));
    assert_eq!(client.deactivate(KEY_ID).unwrap().status, KeyStatus::Inactive);
    assert_eq!(client.activate(KEY_ID).unwrap().status, KeyStatus::Active);
    assert_eq!(client.import(import_request(None)).unwrap().origin, KeyOrigin::Imported);
    let legacy = client.import(import_request(Some("acct-7"))).unwrap();
    assert_eq!((legacy.origin, legacy.account.as_deref()), (KeyOrigin::Legacy, Some("acct-7")));
    let entries = client.audit(AuditQuery { key: Some(KEY_ID.into()), ..Default::default() }).unwrap();
    assert_eq!(entries[0].key_id.as_deref(), Some(KEY_ID));
    let account = AccountView { account: "acct-7".into(), workspaces: vec!["ws-a".into()] };
    assert_eq!(client.set_account(account.clone()).unwrap(), account);
    assert_eq!(client.get_account("acct-7").unwrap().workspaces, ["acme"]);
    assert_eq!(client.list_legacy(Some("acct-7")).unwrap()[0].account.as_deref(), Some("acct-7"));
    assert_eq!(client.credits(KEY_ID, CreditChange::Add(5)).unwrap().limits.credits, Some(15));
    assert_eq!(client.credits(KEY_ID, CreditChange::Set(2)).unwrap().limits.credits, Some(2));
    assert_eq!(client.usage(KEY_ID).unwrap().totals[&VerifyCode::Valid], 3);
    assert_eq!(client.workspace_usage("acme").unwrap()[0].total, 3);
    assert_eq!(client.stats().unwrap().version, "fake");

    let sent = labels(&received);
    assert!(sent.iter().all(|(actor, _)| actor.is_none()), "no actor, no As");
    assert_eq!(sent[0].1, Request::Edit { id: KEY_ID.into(), changes: rename });
    assert_eq!(sent[1].1, Request::Regenerate { id: KEY_ID.into(), grace_seconds: 60 });
    assert_eq!(sent.len(), 15);
    assert_eq!(daemon.connections(), 1);
}

#[test]
fn blocking_actor_labels_management_requests_only() {
    let (received, handler) = recording(lifecycle);
    let daemon = FakeDaemon::start(handler);
    let mut client = BlockingClient::connect(daemon.socket()).unwrap();
    client.set_actor(Some("alice@dashboard".into()));
    assert_eq!(client.actor(), Some("alice@dashboard"));
    client.ping().unwrap();
    client.verify(verify_in("acme")).unwrap();
    client.deactivate(KEY_ID).unwrap();
    client.get(KEY_ID).unwrap();
    client
        .call(Request::As { actor: "bob".into(), request: Box::new(Request::Activate { id: KEY_ID.into() }) })
        .unwrap();
    client.set_actor(None);
    client.revoke(KEY_ID).unwrap();

    let alice = Some("alice@dashboard".to_string());
    let sent: Vec<(Option<String>, &str)> = labels(&received)
        .into_iter()
        .map(|(actor, request)| {
            let name = match request {
                Request::Ping => "ping",
                Request::Verify(_) => "verify",
                Request::Deactivate { .. } => "deactivate",
                Request::Get { .. } => "get",
                Request::Activate { .. } => "activate",
                Request::Revoke { .. } => "revoke",
                other => panic!("unexpected {other:?}"),
            };
            (actor, name)
        })
        .collect();
    assert_eq!(
        sent,
        [
            (None, "ping"),
            (None, "verify"),
            (alice.clone(), "deactivate"),
            (alice, "get"),
            (Some("bob".into()), "activate"),
            (None, "revoke"),
        ],
        "Ping and Verify go bare, a caller's own As is not wrapped again"
    );
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
async fn async_timeouts_fail_each_request_at_its_own_deadline_never_before() {
    // Pings are never answered; verifies are.
    let daemon = FakeDaemon::start(|connection, request| match request {
        Request::Ping => Action::Ignore,
        other => canned(connection, other),
    });
    let client = Client::builder(daemon.socket()).pool_size(1).request_timeout(SHORT_TIMEOUT).build();
    client.verify(verify_in("acme")).await.expect("the connection is open");
    let timed_ping = |client: Client| async move {
        let started = Instant::now();
        let result = client.ping().await;
        (result, started.elapsed())
    };
    let first = tokio::spawn(timed_ping(client.clone()));
    tokio::time::sleep(SHORT_TIMEOUT / 3).await;
    let second = tokio::spawn(timed_ping(client.clone()));
    for (result, took) in [first.await.unwrap(), second.await.unwrap()] {
        assert!(matches!(result, Err(ClientError::Timeout(timeout)) if timeout == SHORT_TIMEOUT), "{result:?}");
        assert!(took >= SHORT_TIMEOUT, "failed after {took:?}, before its timeout");
        assert!(took < SHORT_TIMEOUT * 2, "failed after {took:?}, long after its timeout");
    }
    // With nothing left waiting, a new request is still watched.
    let (result, took) = timed_ping(client.clone()).await;
    assert!(matches!(result, Err(ClientError::Timeout(_))) && took >= SHORT_TIMEOUT && took < SHORT_TIMEOUT * 2);
    client.verify(verify_in("acme")).await.expect("timeouts do not cost the connection");
    assert_eq!(daemon.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_timeout_counts_the_wait_for_a_free_slot() {
    // Pings are never answered; verifies are.
    let daemon = FakeDaemon::start(|connection, request| match request {
        Request::Ping => Action::Ignore,
        other => canned(connection, other),
    });
    let client = Client::builder(daemon.socket()).pool_size(1).max_in_flight(1).request_timeout(SHORT_TIMEOUT).build();
    client.verify(verify_in("acme")).await.expect("the connection is open");
    // A request polled once holds the only slot until it is polled again or dropped.
    let mut holder = Box::pin(client.ping());
    let _ = tokio::time::timeout(Duration::from_millis(20), &mut holder).await;
    let started = Instant::now();
    let queued = client.verify(verify_in("acme")).await;
    let took = started.elapsed();
    assert!(matches!(queued, Err(ClientError::Timeout(timeout)) if timeout == SHORT_TIMEOUT), "{queued:?}");
    assert!(took >= SHORT_TIMEOUT && took < SHORT_TIMEOUT * 2, "gave up after {took:?}");
    drop(holder);
    client.verify(verify_in("acme")).await.expect("the slot is free again");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_lifecycle_helpers_and_actor() {
    let (received, handler) = recording(lifecycle);
    let daemon = FakeDaemon::start(handler);
    let client = Client::builder(daemon.socket()).pool_size(1).build();
    let as_alice = client.with_actor(Some("alice".into()));
    assert_eq!((client.actor(), as_alice.actor()), (None, Some("alice")));
    let rename = KeyChanges { name: Some("renamed".into()), ..Default::default() };
    assert_eq!(as_alice.edit(KEY_ID, rename).await.unwrap().name, "renamed");
    assert_eq!(as_alice.regenerate(KEY_ID, 0).await.unwrap().key.previous_token_until, None);
    assert_eq!(as_alice.deactivate(KEY_ID).await.unwrap().status, KeyStatus::Inactive);
    assert_eq!(as_alice.activate(KEY_ID).await.unwrap().status, KeyStatus::Active);
    assert_eq!(as_alice.import(import_request(None)).await.unwrap().origin, KeyOrigin::Imported);
    assert_eq!(as_alice.audit(AuditQuery::default()).await.unwrap().len(), 1);
    let account = AccountView { account: "acct-7".into(), workspaces: vec!["ws-a".into()] };
    assert_eq!(as_alice.set_account(account.clone()).await.unwrap(), account);
    assert_eq!(as_alice.get_account("acct-7").await.unwrap().workspaces, ["acme"]);
    assert_eq!(as_alice.list_legacy(None).await.unwrap().len(), 1);
    assert_eq!(as_alice.credits(KEY_ID, CreditChange::Set(7)).await.unwrap().limits.credits, Some(7));
    assert_eq!(as_alice.usage(KEY_ID).await.unwrap().key_id, KEY_ID);
    assert_eq!(as_alice.workspace_usage("acme").await.unwrap().len(), 1);
    assert_eq!(as_alice.stats().await.unwrap().version, "fake");
    as_alice.verify(verify_in("acme")).await.unwrap();
    client.revoke(KEY_ID).await.unwrap();

    let sent = labels(&received);
    assert_eq!(sent.len(), 15);
    let (management, rest) = sent.split_at(13);
    assert!(management.iter().all(|(actor, _)| actor.as_deref() == Some("alice")), "every management request");
    assert!(matches!(&rest[0], (None, Request::Verify(_))), "a verify goes bare");
    assert!(matches!(&rest[1], (None, Request::Revoke { .. })), "the original handle has no actor");
    assert_eq!(daemon.connections(), 1, "the labelled handle shares the pool");
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
