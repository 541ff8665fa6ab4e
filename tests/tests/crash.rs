//! Crash consistency: a stream of management operations while `keywardd` is killed with SIGKILL at random
//! points, many times over. After each restart every acknowledged operation is present with its exact
//! effect, an operation whose answer was lost is either wholly applied or not at all, the audit log holds
//! exactly the acknowledged actions (plus at most the one in flight), and the daemon starts cleanly.
//!
//! Rounds: `KEYWARD_CRASH_ROUNDS` (default 25). The seed is printed, and `KEYWARD_CRASH_SEED` replays it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keyward_protocol::{
    AuditAction, AuditQuery, ExpirySpec, ImportRequest, KeyChanges, KeyStatus, Reply, Request, Secret, VerifyCode,
};
use keyward_tests::{Daemon, RawConn};

/// xorshift64*: a small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Model {
    token: Secret,
    name: String,
    status: KeyStatus,
    /// Tokens this key had before a regenerate (grace 0): they must answer NOT_FOUND.
    old_tokens: Vec<Secret>,
}

/// An operation the driver sends, with the effect it has when acknowledged.
#[derive(Clone, Debug)]
enum Op {
    Create,
    Import(String),
    Edit(String, String),
    Regenerate(String),
    Deactivate(String),
    Activate(String),
    Revoke(String),
}

impl Op {
    fn action(&self) -> AuditAction {
        match self {
            Op::Create => AuditAction::Create,
            Op::Import(_) => AuditAction::Import,
            Op::Edit(..) => AuditAction::Edit,
            Op::Regenerate(_) => AuditAction::Regenerate,
            Op::Deactivate(_) => AuditAction::Deactivate,
            Op::Activate(_) => AuditAction::Activate,
            Op::Revoke(_) => AuditAction::Revoke,
        }
    }

    fn request(&self, rng: &mut Rng) -> Request {
        match self {
            Op::Create => Request::Create(keyward_protocol::CreateRequest {
                expires: ExpirySpec::Never,
                ..keyward_protocol::CreateRequest::new("crash", "crash key", vec!["read:all".into()])
            }),
            Op::Import(token) => Request::Import(ImportRequest::new(
                Secret::new(token.clone()),
                "crash",
                "imported key",
                vec!["read:all".into()],
            )),
            Op::Edit(id, name) => {
                let _ = rng;
                Request::Edit { id: id.clone(), changes: KeyChanges { name: Some(name.clone()), ..Default::default() } }
            }
            Op::Regenerate(id) => Request::Regenerate { id: id.clone(), grace_seconds: 0 },
            Op::Deactivate(id) => Request::Deactivate { id: id.clone() },
            Op::Activate(id) => Request::Activate { id: id.clone() },
            Op::Revoke(id) => Request::Revoke { id: id.clone() },
        }
    }
}

/// Picks an operation that is valid for the model's current state.
fn pick(rng: &mut Rng, keys: &BTreeMap<String, Model>, round: usize, step: usize) -> Op {
    let live: Vec<(&String, &Model)> = keys.iter().filter(|(_, m)| m.status != KeyStatus::Revoked).collect();
    if live.is_empty() || rng.below(4) == 0 {
        return if rng.below(3) == 0 {
            Op::Import(format!("legacy_token_{round:04}_{step:04}_{}", rng.next()))
        } else {
            Op::Create
        };
    }
    let (id, model) = live[rng.below(live.len() as u64) as usize];
    let id = id.clone();
    match rng.below(5) {
        0 => Op::Edit(id, format!("renamed {round} {step}")),
        1 => Op::Regenerate(id),
        2 if model.status == KeyStatus::Active => Op::Deactivate(id),
        2 => Op::Activate(id),
        3 if rng.below(3) == 0 => Op::Revoke(id),
        _ => Op::Edit(id, format!("edited {round} {step}")),
    }
}

/// Applies an acknowledged reply to the model.
fn apply(keys: &mut BTreeMap<String, Model>, op: &Op, reply: Reply) {
    match (op, reply) {
        (Op::Create, Reply::Created(created)) => {
            keys.insert(
                created.key.id.clone(),
                Model { token: created.token, name: created.key.name, status: KeyStatus::Active, old_tokens: vec![] },
            );
        }
        (Op::Import(token), Reply::Key(view)) => {
            let model = Model {
                token: Secret::new(token.clone()),
                name: view.name,
                status: KeyStatus::Active,
                old_tokens: vec![],
            };
            keys.insert(view.id, model);
        }
        (Op::Edit(id, name), Reply::Key(_)) => keys.get_mut(id).unwrap().name = name.clone(),
        (Op::Regenerate(id), Reply::Created(created)) => {
            let model = keys.get_mut(id).unwrap();
            let old = std::mem::replace(&mut model.token, created.token);
            model.old_tokens.push(old);
        }
        (Op::Deactivate(id), Reply::Key(_)) => keys.get_mut(id).unwrap().status = KeyStatus::Inactive,
        (Op::Activate(id), Reply::Key(_)) => keys.get_mut(id).unwrap().status = KeyStatus::Active,
        (Op::Revoke(id), Reply::Key(_)) => keys.get_mut(id).unwrap().status = KeyStatus::Revoked,
        (op, reply) => panic!("{op:?} answered {reply:?}"),
    }
}

fn expected_code(status: KeyStatus) -> VerifyCode {
    match status {
        KeyStatus::Active => VerifyCode::Valid,
        KeyStatus::Inactive => VerifyCode::Inactive,
        KeyStatus::Revoked => VerifyCode::Revoked,
        other => panic!("the driver never makes a {other:?} key"),
    }
}

/// The key as the daemon has it, in model form (token fields are the model's own).
fn observed(admin: &mut RawConn, id: &str) -> Option<(String, KeyStatus)> {
    match admin.get(id) {
        Reply::Key(view) => Some((view.name, view.status)),
        Reply::Error(_) => None,
        other => panic!("{other:?}"),
    }
}

fn audit_after(admin: &mut RawConn, seq: u64) -> Vec<keyward_protocol::AuditEntry> {
    match admin.request(Request::Audit(AuditQuery { limit: 10_000, ..Default::default() })) {
        Reply::Audit(entries) => entries.into_iter().rev().filter(|e| e.seq > seq).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn acknowledged_operations_survive_sigkill_at_random_points() {
    let rounds: usize = std::env::var("KEYWARD_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(25);
    let seed = std::env::var("KEYWARD_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("crash test: {rounds} rounds, seed {seed} (KEYWARD_CRASH_SEED replays it)");
    let mut rng = Rng(seed);
    let mut daemon = Daemon::start();
    let mut keys: BTreeMap<String, Model> = BTreeMap::new();
    let mut audited_up_to = 0u64;
    let mut acknowledged_total = 0;
    let mut lost_answers = 0;

    for round in 0..rounds {
        // Drive operations until the kill lands: the killer fires after a random delay.
        let kill_after = Duration::from_millis(20 + rng.below(200));
        let pid = daemon.pid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_after);
            // SAFETY: kill(2) on the daemon this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        let mut admin = daemon.admin();
        let mut acknowledged: Vec<Op> = Vec::new();
        let mut in_flight: Option<Op> = None;
        let started = Instant::now();
        for step in 0.. {
            let op = pick(&mut rng, &keys, round, step);
            let request = op.request(&mut rng);
            let id = admin.send_request(request);
            match admin.read_reply() {
                Some(frame) => {
                    assert_eq!(frame.id, id);
                    apply(&mut keys, &op, frame.reply);
                    acknowledged.push(op);
                }
                None => {
                    in_flight = Some(op);
                    break;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the kill never landed");
        }
        killer.join().unwrap();
        daemon.kill();
        daemon.restart();
        let mut admin = daemon.admin();

        // The audit log since the last round: exactly the acknowledged actions, in order, plus at most the
        // one whose answer was lost.
        let entries = audit_after(&mut admin, audited_up_to);
        let actions: Vec<AuditAction> = entries.iter().map(|e| e.action).collect();
        let expected: Vec<AuditAction> = acknowledged.iter().map(Op::action).collect();
        let in_flight_applied = match actions.len() - expected.len() {
            0 => false,
            1 => true,
            extra => {
                panic!("round {round} (seed {seed}): {extra} unexplained audit entries: {actions:?} vs {expected:?}")
            }
        };
        assert_eq!(actions[..expected.len()], expected[..], "round {round} (seed {seed}): audit order");
        if in_flight_applied {
            let op = in_flight.as_ref().expect("an extra entry needs an operation in flight");
            assert_eq!(*actions.last().unwrap(), op.action(), "round {round} (seed {seed})");
            lost_answers += 1;
            // Its effect is visible: bring the model up to date from the daemon (its token, if new, is lost).
            let entry = entries.last().unwrap();
            let id = entry.key_id.clone().expect("key actions name their key");
            let (name, status) = observed(&mut admin, &id).expect("an audited key exists");
            match op {
                Op::Create | Op::Import(_) | Op::Regenerate(_) => {
                    // The new token never reached us: drop the key from the model (keeping it would need it).
                    keys.remove(&id);
                }
                _ => {
                    let model = keys.get_mut(&id).unwrap();
                    model.name = name;
                    model.status = status;
                }
            }
        }
        audited_up_to = entries.last().map_or(audited_up_to, |e| e.seq);
        acknowledged_total += acknowledged.len();

        // Every key the model knows is exactly as acknowledged: name, status, current token, dead old tokens.
        let mut verifier = daemon.verifier();
        for (id, model) in &keys {
            let (name, status) =
                observed(&mut admin, id).unwrap_or_else(|| panic!("round {round} (seed {seed}): key {id} lost"));
            assert_eq!((&name, status), (&model.name, model.status), "round {round} (seed {seed}): key {id}");
        }
        // Verifying costs Argon2 for cold keys: check the keys this round touched, and a few others.
        let touched: Vec<&String> =
            keys.keys().filter(|id| entries.iter().any(|e| e.key_id.as_ref() == Some(*id))).collect();
        let sample: Vec<&String> = keys.keys().filter(|_| rng.below(8) == 0).take(3).collect();
        for id in touched.into_iter().chain(sample) {
            let model = &keys[id];
            assert_eq!(verifier.verify(&model.token, None, None).code, expected_code(model.status), "key {id}");
            if let Some(old) = model.old_tokens.last() {
                let code = verifier.verify(old, None, None).code;
                assert!(matches!(code, VerifyCode::NotFound | VerifyCode::Malformed), "an old token of {id}: {code}");
            }
        }
    }
    eprintln!(
        "crash test: {rounds} kill points, {acknowledged_total} acknowledged operations, {lost_answers} applied-but-unanswered, {} keys checked",
        keys.len()
    );
}
