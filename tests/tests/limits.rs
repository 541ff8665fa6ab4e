//! Rate limits, credits and usage counters in the verify round trip, against the real daemon.
//! Windows are made short with custom rates so no test waits more than about a second.

use std::collections::BTreeMap;

use keyward_protocol::token::Token;
use keyward_protocol::{
    CreateRequest, CreditChange, ErrorCode, ExpirySpec, KeyChanges, KeyId, Limits, Rate, RatePolicy, Refill, Reply,
    Request, Role, Secret, VerifyAnswer, VerifyCode, VerifyRequest,
};
use keyward_tests::{Daemon, RawConn};

/// A key of workspace `ws1` with `read:all`, no expiry and `limits`.
fn create_request(limits: Limits) -> CreateRequest {
    CreateRequest {
        workspace: "ws1".into(),
        name: "limited key".into(),
        description: None,
        scopes: vec!["read:all".into()],
        expires: ExpirySpec::Never,
        env: Default::default(),
        role: Role::Member,
        metadata: BTreeMap::new(),
        limits,
    }
}

fn create(admin: &mut RawConn, limits: Limits) -> (Secret, String) {
    match admin.request(Request::Create(create_request(limits))) {
        Reply::Created(created) => (created.token, created.key.id),
        other => panic!("{other:?}"),
    }
}

fn rate(text: &str) -> Rate {
    text.parse().unwrap()
}

fn verify(conn: &mut RawConn, token: &Secret, cost: u32, limits: &[&str]) -> VerifyAnswer {
    let request = VerifyRequest {
        cost,
        limits: limits.iter().map(|s| s.to_string()).collect(),
        ..VerifyRequest::new(token.clone())
    };
    match conn.request(Request::Verify(request)) {
        Reply::Verify(answer) => answer,
        other => panic!("{other:?}"),
    }
}

fn remaining(answer: &VerifyAnswer, policy: &str) -> u64 {
    answer
        .ratelimit
        .iter()
        .find(|l| l.policy == policy)
        .unwrap_or_else(|| panic!("no {policy} in {answer:?}"))
        .remaining
}

#[test]
fn the_free_plan_allows_100_per_minute_and_paid_1000() {
    let daemon = Daemon::start();
    let (mut admin, mut conn) = (daemon.admin(), daemon.verifier());
    let (free, _) = create(&mut admin, Limits::default());
    for i in 0..100 {
        let answer = verify(&mut conn, &free, 1, &[]);
        assert_eq!(answer.code, VerifyCode::Valid, "request {i}");
        assert_eq!(remaining(&answer, "free"), 99 - i);
    }
    let refused = verify(&mut conn, &free, 1, &[]);
    assert_eq!(refused.code, VerifyCode::RateLimited);
    let retry = refused.retry_after_ms.expect("a retry time");
    assert!((1..=600).contains(&retry), "one request per 600 ms: {retry}");
    let status = &refused.ratelimit[0];
    assert_eq!((status.policy.as_str(), status.limit, status.remaining, status.window_seconds), ("free", 100, 0, 60));

    let (paid, _) = create(&mut admin, Limits { rate: RatePolicy::Plan("paid".into()), ..Default::default() });
    let answer = verify(&mut conn, &paid, 1, &[]);
    assert_eq!((answer.code, answer.ratelimit[0].limit, answer.ratelimit[0].remaining), (VerifyCode::Valid, 1000, 999));
    let (unlimited, _) = create(&mut admin, Limits { rate: RatePolicy::Unlimited, ..Default::default() });
    assert!(verify(&mut conn, &unlimited, 1, &[]).ratelimit.is_empty());
}

#[test]
fn a_retry_at_retry_after_succeeds() {
    let daemon = Daemon::start();
    let (mut admin, mut conn) = (daemon.admin(), daemon.verifier());
    let (token, _) = create(&mut admin, Limits { rate: RatePolicy::Custom(rate("3/s")), ..Default::default() });
    for _ in 0..3 {
        assert_eq!(verify(&mut conn, &token, 1, &[]).code, VerifyCode::Valid);
    }
    let refused = verify(&mut conn, &token, 1, &[]);
    assert_eq!(refused.code, VerifyCode::RateLimited);
    let retry = refused.retry_after_ms.unwrap();
    assert!(retry <= 334, "{retry}");
    std::thread::sleep(std::time::Duration::from_millis(retry));
    assert_eq!(verify(&mut conn, &token, 1, &[]).code, VerifyCode::Valid, "allowed at the announced time");
}

#[test]
fn cost_zero_checks_and_larger_costs_spend_more() {
    let daemon = Daemon::start();
    let (mut admin, mut conn) = (daemon.admin(), daemon.verifier());
    let (token, _) = create(&mut admin, Limits { rate: RatePolicy::Custom(rate("10/h")), ..Default::default() });
    assert_eq!(remaining(&verify(&mut conn, &token, 4, &[]), "custom"), 6);
    let check = verify(&mut conn, &token, 0, &[]);
    assert_eq!((check.code, remaining(&check, "custom")), (VerifyCode::Valid, 6), "cost 0 spends nothing");
    let too_much = verify(&mut conn, &token, 7, &[]);
    assert_eq!((too_much.code, remaining(&too_much, "custom")), (VerifyCode::RateLimited, 6));
    let never = verify(&mut conn, &token, 11, &[]);
    assert_eq!((never.code, never.retry_after_ms), (VerifyCode::RateLimited, None), "can never fit");
    assert_eq!(remaining(&verify(&mut conn, &token, 6, &[]), "custom"), 0);
}

#[test]
fn named_limits_are_all_or_nothing() {
    let daemon = Daemon::start();
    let (mut admin, mut conn) = (daemon.admin(), daemon.verifier());
    let named = BTreeMap::from([("exports".to_string(), rate("2/h")), ("reports".to_string(), rate("5/h"))]);
    let limits = Limits { rate: RatePolicy::Custom(rate("100/h")), named, ..Default::default() };
    let (token, _) = create(&mut admin, limits);
    let plain = verify(&mut conn, &token, 1, &[]);
    assert_eq!(plain.ratelimit.len(), 1, "named limits count only when asked for");
    for _ in 0..2 {
        assert_eq!(verify(&mut conn, &token, 1, &["exports", "reports"]).code, VerifyCode::Valid);
    }
    let refused = verify(&mut conn, &token, 1, &["reports", "exports"]);
    assert_eq!(refused.code, VerifyCode::RateLimited);
    assert_eq!(remaining(&refused, "reports"), 3, "the refused request spent nothing on `reports`");
    assert_eq!(remaining(&refused, "custom"), 97, "nor on the main limit");
    let reports = verify(&mut conn, &token, 1, &["reports"]);
    assert_eq!((reports.code, remaining(&reports, "reports")), (VerifyCode::Valid, 2));
    assert_eq!(verify(&mut conn, &token, 1, &["no-such-limit"]).code, VerifyCode::Valid, "unknown names are ignored");
}

/// The CLI's parser refuses a rate of 0 per period and a monthly refill on day 0; a request written by
/// another client must be refused as well, with INVALID_ARGUMENT, and the daemon keeps serving (a limit of
/// 0 has no interval to divide).
#[test]
fn a_rate_of_zero_or_a_refill_day_of_zero_from_the_wire_is_refused_and_the_daemon_serves_on() {
    let daemon = Daemon::start();
    let mut admin = daemon.admin();
    let zero = Rate { count: 0, period: keyward_protocol::Period::Minute };
    let too_many =
        Rate { count: keyward_protocol::limits::MAX_RATE_COUNT + 1, period: keyward_protocol::Period::Second };
    let refused = |reply: Reply| match reply {
        Reply::Error(error) => {
            assert_eq!(error.code, ErrorCode::InvalidArgument, "{error:?}");
            let says = ["the count must be 1 to", "day is 1 to 31"];
            assert!(says.iter().any(|rule| error.message.contains(rule)), "{}", error.message);
        }
        other => panic!("{other:?}"),
    };
    for limits in [
        Limits { rate: RatePolicy::Custom(zero), ..Default::default() },
        Limits { rate: RatePolicy::Custom(too_many), ..Default::default() },
        Limits { named: BTreeMap::from([("exports".to_owned(), zero)]), ..Default::default() },
        Limits { refill: Some(Refill::Monthly { amount: 5, day: 0 }), ..Default::default() },
        Limits { refill: Some(Refill::Monthly { amount: 5, day: 32 }), ..Default::default() },
    ] {
        let id = admin.send_request(Request::Create(create_request(limits)));
        match admin.read_reply() {
            Some(frame) => {
                assert_eq!(frame.id, id);
                refused(frame.reply);
            }
            None => panic!("no reply; the daemon's log:\n{}", daemon.log()),
        }
    }
    let (token, id) = create(&mut admin, Limits::default());
    refused(admin.request(Request::Edit {
        id: id.clone(),
        changes: KeyChanges { rate: Some(RatePolicy::Custom(zero)), ..Default::default() },
    }));
    let named = BTreeMap::from([("exports".to_owned(), Some(zero))]);
    refused(admin.request(Request::Edit { id, changes: KeyChanges { named_limits: named, ..Default::default() } }));
    let mut conn = daemon.verifier();
    assert_eq!(verify(&mut conn, &token, 1, &[]).code, VerifyCode::Valid, "the daemon serves on, the key unchanged");
}

#[test]
fn editing_the_plan_takes_effect_on_the_next_verify() {
    let daemon = Daemon::start();
    let (mut admin, mut conn) = (daemon.admin(), daemon.verifier());
    let (token, id) = create(&mut admin, Limits::default());
    for _ in 0..3 {
        assert_eq!(verify(&mut conn, &token, 1, &[]).code, VerifyCode::Valid);
    }
    let changes = KeyChanges { rate: Some(RatePolicy::Custom(rate("3/h"))), ..Default::default() };
    assert!(matches!(admin.request(Request::Edit { id: id.clone(), changes }), Reply::Key(_)));
    let answer = verify(&mut conn, &token, 1, &[]);
    assert_eq!(answer.code, VerifyCode::RateLimited, "3 already spent count against the new 3/h");
    let bad = KeyChanges { rate: Some(RatePolicy::Plan("gold".into())), ..Default::default() };
    match admin.request(Request::Edit { id, changes: bad }) {
        Reply::Error(error) => {
            assert!(error.code == ErrorCode::InvalidArgument && error.message.contains("free, paid"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn credits_run_out_and_refusals_spend_nothing() {
    let mut daemon = Daemon::start();
    let (mut admin, mut conn) = (daemon.admin(), daemon.verifier());
    let limits = Limits { rate: RatePolicy::Custom(rate("100/h")), credits: Some(5), ..Default::default() };
    let (token, id) = create(&mut admin, limits);
    assert_eq!(verify(&mut conn, &token, 2, &[]).credits, Some(3));
    assert_eq!(verify(&mut conn, &token, 1, &[]).credits, Some(2));
    let exceeded = verify(&mut conn, &token, 3, &[]);
    assert_eq!((exceeded.code, exceeded.credits), (VerifyCode::UsageExceeded, Some(2)));
    assert_eq!(remaining(&exceeded, "custom"), 97, "the refused request gave its rate budget back");
    assert_eq!(verify(&mut conn, &token, 2, &[]).credits, Some(0));
    assert_eq!(verify(&mut conn, &token, 1, &[]).code, VerifyCode::UsageExceeded);

    let set = |admin: &mut RawConn, change| match admin.request(Request::Credits { id: id.clone(), change }) {
        Reply::Key(view) => view.limits.credits,
        other => panic!("{other:?}"),
    };
    assert_eq!(set(&mut admin, CreditChange::Add(4)), Some(4));
    assert_eq!(verify(&mut conn, &token, 1, &[]).credits, Some(3));
    drop((admin, conn));

    // The balance survives a restart.
    daemon.restart();
    let mut conn = daemon.verifier();
    assert_eq!(verify(&mut conn, &token, 1, &[]).credits, Some(2));
    let (other, other_id) = create(&mut daemon.admin(), Limits::default());
    match daemon.admin().request(Request::Credits { id: other_id.clone(), change: CreditChange::Add(1) }) {
        Reply::Error(error) => assert_eq!(error.code, ErrorCode::Conflict),
        other => panic!("{other:?}"),
    }
    match daemon.admin().request(Request::Credits { id: other_id, change: CreditChange::Set(1) }) {
        Reply::Key(view) => assert_eq!(view.limits.credits, Some(1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(verify(&mut conn, &other, 1, &[]).credits, Some(0));
    assert_eq!(verify(&mut conn, &other, 1, &[]).code, VerifyCode::UsageExceeded);
}

/// A verify refused by a rate limit still reports the key's credits (unspent), as every answer about a key
/// with credits does: an app server can show the balance on its 429.
#[test]
fn a_rate_limited_answer_carries_the_unspent_credits() {
    let daemon = Daemon::start();
    let (mut admin, mut conn) = (daemon.admin(), daemon.verifier());
    let limits = Limits { rate: RatePolicy::Custom(rate("1/h")), credits: Some(10), ..Default::default() };
    let (token, _) = create(&mut admin, limits);
    assert_eq!(verify(&mut conn, &token, 1, &[]).credits, Some(9));
    let limited = verify(&mut conn, &token, 1, &[]);
    assert_eq!((limited.code, limited.credits), (VerifyCode::RateLimited, Some(9)), "{limited:?}");
}

#[test]
fn a_refill_without_a_balance_starts_full() {
    let daemon = Daemon::start();
    let (mut admin, mut conn) = (daemon.admin(), daemon.verifier());
    let limits = Limits { refill: Some(Refill::Daily { amount: 2 }), ..Default::default() };
    let (token, _) = create(&mut admin, limits);
    assert_eq!(verify(&mut conn, &token, 1, &[]).credits, Some(1));
}

#[test]
fn concurrent_verifiers_never_exceed_the_limit() {
    let daemon = Daemon::start();
    let (token, _) =
        create(&mut daemon.admin(), Limits { rate: RatePolicy::Custom(rate("50/h")), ..Default::default() });
    let valid: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (socket, token) = (daemon.verify_socket(), token.clone());
                scope.spawn(move || {
                    let mut conn = RawConn::connect(&socket).unwrap();
                    (0..25).filter(|_| verify(&mut conn, &token, 1, &[]).code == VerifyCode::Valid).count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    // 200 attempts against a burst of 50 that refills one per 72 s: exactly 50 pass.
    assert_eq!(valid, 50);
}

#[test]
fn usage_counts_every_outcome_by_code() {
    let mut daemon = Daemon::start();
    let (mut admin, mut conn) = (daemon.admin(), daemon.verifier());
    let (token, id) = create(&mut admin, Limits::default());
    let (quiet, _) = create(&mut admin, Limits::default());
    let wrong_secret = Token::assemble(Default::default(), &KeyId::parse(&id).unwrap(), &[b'x'; 32]);
    for _ in 0..3 {
        assert_eq!(verify(&mut conn, &token, 1, &[]).code, VerifyCode::Valid);
    }
    for _ in 0..2 {
        assert_eq!(conn.verify(&token, Some("write:tables"), None).code, VerifyCode::InsufficientScope);
    }
    assert_eq!(conn.verify(&wrong_secret, None, None).code, VerifyCode::NotFound);
    verify(&mut conn, &quiet, 1, &[]);

    let expected =
        BTreeMap::from([(VerifyCode::Valid, 3), (VerifyCode::InsufficientScope, 2), (VerifyCode::NotFound, 1)]);
    let report = |admin: &mut RawConn| match admin.request(Request::Usage { id: id.clone() }) {
        Reply::Usage(report) => report,
        other => panic!("{other:?}"),
    };
    let before = report(&mut admin);
    assert_eq!(before.totals, expected);
    assert_eq!(before.hourly.len(), 1);
    assert_eq!(before.hourly[0].counts, expected);
    assert_eq!(before.daily[0].counts, expected);
    match admin.request(Request::WorkspaceUsage { workspace: "ws1".into() }) {
        Reply::WorkspaceUsage(keys) => {
            assert_eq!(keys.iter().map(|k| k.total).collect::<Vec<_>>(), [6, 1], "top keys first");
            assert_eq!(keys[0].key_id, id);
        }
        other => panic!("{other:?}"),
    }
    drop((admin, conn));
    daemon.restart();
    assert_eq!(report(&mut daemon.admin()).totals, expected, "persisted at shutdown");
}
