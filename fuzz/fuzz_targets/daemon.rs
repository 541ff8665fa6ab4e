//! The daemon's request handling, stateful: arbitrary sequences of management requests and verifies fed to
//! an in-process service (a real store in a temporary directory, cheap Argon2), interleaved with requests
//! decoded straight from the fuzzer's bytes. Invariants, checked against the daemon's own state:
//! - nothing panics;
//! - a VALID answer's key is, right then, neither revoked, nor inactive, nor expired;
//! - a token replaced by a regenerate (grace 0) never verifies again;
//! - a listing never contains the secret part of any token;
//! - a verify answered from memory writes the same reply frame as its answer encoded whole.
#![no_main]

use std::sync::OnceLock;

use keyward_daemon::internals::{Caller, DigestKeys, HashCost, Hasher};
use keyward_daemon::internals::{handle, Handled, Service, SocketRole};
use keyward_daemon::internals::Store;
use keyward_daemon::Config;
use keyward_protocol::{
    codec, Actor, CreateRequest, ExpirySpec, KeyStatus, ListRequest, RatePolicy, Reply, ReplyFrame, Request, Secret,
    VerifyCode, VerifyRequest,
};
use libfuzzer_sys::fuzz_target;

struct World {
    runtime: tokio::runtime::Runtime,
    service: Service,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(dir.path().join("data"), dir.path().join("v.sock"), dir.path().join("a.sock"));
        let store = Store::open(&config.data_dir).unwrap();
        let loaded = store.load().unwrap();
        let cheap = HashCost { memory_kib: 8, iterations: 1, parallelism: 1 };
        let hasher = Hasher::new(cheap, 1, 64, DigestKeys::ephemeral()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        World { runtime, service: Service::new(loaded, store, hasher, &config).unwrap().0, _dir: dir }
    })
}

fn call(request: Request) -> Reply {
    let world = world();
    match handle(&world.service, request, SocketRole::Admin, &Actor::default(), Caller::default()) {
        Handled::Now(reply) => reply,
        Handled::Verified(verdict) => {
            let mut spliced = Vec::new();
            verdict.encode_reply(7, &mut spliced).unwrap();
            let reply = Reply::Verify(verdict.into_answer());
            let whole = codec::encode(&ReplyFrame { id: 7, reply }).unwrap();
            assert_eq!(spliced, whole, "a verdict's reply frame differs from its answer's");
            codec::decode::<ReplyFrame>(&spliced).unwrap().reply
        }
        Handled::Later(work) => world.runtime.block_on(work),
    }
}

fn status_of(id: &str) -> Option<KeyStatus> {
    match call(Request::Get { id: id.into() }) {
        Reply::Key(view) => Some(view.status),
        _ => None,
    }
}

/// Checks a verify's answer against the daemon's view of the key.
fn check_answer(reply: &Reply, dead: &[Secret], token: &Secret) {
    let Reply::Verify(answer) = reply else { return };
    if answer.code != VerifyCode::Valid {
        return;
    }
    assert!(!dead.contains(token), "a regenerated-away token verified");
    let id = &answer.key.as_ref().expect("VALID names its key").id;
    let status = status_of(id).expect("a VALID key exists");
    assert!(matches!(status, KeyStatus::Active | KeyStatus::Legacy), "VALID for a {status:?} key");
}

/// Tokens minted in this run, and tokens that must never verify again.
struct Run {
    keys: Vec<(String, Secret)>,
    dead: Vec<Secret>,
}

impl Run {
    fn note(&mut self, reply: &Reply, regenerated: Option<&str>) {
        if let Reply::Created(created) = reply {
            if let Some(id) = regenerated {
                if let Some(slot) = self.keys.iter_mut().find(|(k, _)| k == id) {
                    self.dead.push(std::mem::replace(&mut slot.1, created.token.clone()));
                    return;
                }
            }
            self.keys.push((created.key.id.clone(), created.token.clone()));
        }
    }

    fn pick(&self, byte: u8) -> Option<&(String, Secret)> {
        (!self.keys.is_empty()).then(|| &self.keys[byte as usize % self.keys.len()])
    }
}

const SCOPES: [&str; 5] = ["read:all", "write:tables", "read:forms", "admin", "write:all"];

fuzz_target!(|data: &[u8]| {
    let mut run = Run { keys: Vec::new(), dead: Vec::new() };
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        let target = run.pick(arg).cloned();
        match op % 10 {
            0 => {
                let mut request = CreateRequest::new("fuzz", "fuzzed key", vec![SCOPES[arg as usize % 3].to_owned()]);
                request.expires = ExpirySpec::Never;
                request.limits.rate = RatePolicy::Unlimited;
                let reply = call(Request::Create(request));
                run.note(&reply, None);
            }
            1 | 2 | 3 => {
                let Some((id, _)) = target else { continue };
                let request = match op % 10 {
                    1 => Request::Revoke { id },
                    2 => Request::Deactivate { id },
                    _ => Request::Activate { id },
                };
                call(request);
            }
            4 => {
                let Some((id, _)) = target else { continue };
                let reply = call(Request::Regenerate { id: id.clone(), grace_seconds: 0 });
                run.note(&reply, Some(&id));
            }
            5 | 6 => {
                let token = match (op % 10, &target) {
                    (5, Some((_, token))) => token.clone(),
                    _ if !run.dead.is_empty() => run.dead[arg as usize % run.dead.len()].clone(),
                    _ => continue,
                };
                let scope = (arg % 2 == 0).then(|| SCOPES[arg as usize % SCOPES.len()].to_owned());
                let reply = call(Request::Verify(VerifyRequest { scope, ..VerifyRequest::new(token.clone()) }));
                check_answer(&reply, &run.dead, &token);
            }
            7 => {
                let text: String = bytes.by_ref().take(arg as usize % 80).map(char::from).collect();
                let token = Secret::new(text);
                let reply = call(Request::Verify(VerifyRequest::new(token.clone())));
                check_answer(&reply, &run.dead, &token);
            }
            8 => {
                let reply = call(Request::List(ListRequest { workspace: "fuzz".into(), after: None, limit: 0 }));
                let listed = codec::encode(&reply).unwrap();
                for token in run.keys.iter().map(|(_, token)| token).chain(&run.dead) {
                    let secret = &token.expose().as_bytes()[21..53];
                    assert!(!listed.windows(secret.len()).any(|w| w == secret), "a listing exposed a secret");
                }
            }
            _ => {
                // A request decoded straight from the input: whatever it is, it must not break anything.
                let rest: Vec<u8> = bytes.by_ref().take(arg as usize).collect();
                if let Ok(request) = codec::decode_request::<Request>(&rest) {
                    let regenerated = match &request {
                        Request::Regenerate { id, .. } => Some(id.clone()),
                        _ => None,
                    };
                    let token = match &request {
                        Request::Verify(verify) => Some(verify.token.clone()),
                        _ => None,
                    };
                    let reply = call(request);
                    run.note(&reply, regenerated.as_deref());
                    if let Some(token) = token {
                        check_answer(&reply, &run.dead, &token);
                    }
                }
            }
        }
    }
});
