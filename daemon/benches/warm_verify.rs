//! The daemon's whole share of a warm verify without the socket: a request frame's bytes in, the reply
//! frame's bytes out, through the same calls a connection makes (decode in place,
//! `Service::handle_verify`, the verdict's encoding), on an in-process service with a real store in a
//! temporary directory. Beside it, the steps it is made of that any implementation of the same checks
//! runs: the token's parse and checksum, the request's decoding (in place, and whole for comparison) and
//! the reply's encoding. Run with `cargo bench -p keyward-daemon --bench warm_verify`; BENCHMARKS.md sets
//! these figures against the echo floor's cost per request.

use divan::{black_box, Bencher};
use keyward_daemon::internals::Now;
use keyward_daemon::internals::Store;
use keyward_daemon::internals::{handle, handle_verify, Handled, Service, SocketRole};
use keyward_daemon::internals::{Caller, DigestKeys, HashCost, Hasher};
use keyward_daemon::Config;
use keyward_protocol::token::Token;
use keyward_protocol::verify_ref;
use keyward_protocol::{
    codec, Actor, CreateRequest, ExpirySpec, RatePolicy, Reply, Request, RequestFrame, Secret, VerifyCode,
    VerifyRequest,
};

fn main() {
    divan::main();
}

/// A service holding one key, verified once, and the frame of a warm verify of it.
struct Warm {
    service: Service,
    token: Secret,
    frame: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Warm {
    fn new() -> Warm {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(dir.path().join("data"), dir.path().join("v.sock"), dir.path().join("a.sock"));
        let store = Store::open(&config.data_dir).unwrap();
        let loaded = store.load().unwrap();
        let hasher = Hasher::new(HashCost::default(), 1, 8, DigestKeys::ephemeral()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let service = Service::new(loaded, store, hasher, &config).unwrap().0;
        let token = runtime.block_on(async {
            let mut create = CreateRequest::new("ws1", "bench key", vec!["read:tables".into(), "write:forms".into()]);
            create.expires = ExpirySpec::Never;
            create.limits.rate = RatePolicy::Custom("1000000000/s".parse().unwrap());
            let Reply::Created(created) = settle(&service, Request::Create(create)).await else { panic!("create") };
            created.token
        });
        let request = VerifyRequest { scope: Some("read:tables".into()), ..VerifyRequest::new(token.clone()) };
        let first = runtime.block_on(settle(&service, Request::Verify(request.clone())));
        assert!(matches!(first, Reply::Verify(ref answer) if answer.code == VerifyCode::Valid), "{first:?}");
        let frame = codec::encode(&RequestFrame { id: 7, request: Request::Verify(request) }).unwrap();
        Warm { service, token, frame, _dir: dir }
    }

    /// What `Connection::answer` does for a verify answered from memory; the reply frame lands in `out`.
    fn answer(&self, out: &mut Vec<u8>) {
        let (id, request) = verify_ref::decode_verify_request(&self.frame).unwrap();
        let Handled::Verified(verdict) = handle_verify(&self.service, &request, Now::read(), Caller::default()) else {
            panic!("a warm verify is answered from memory");
        };
        verdict.encode_reply(id, out).unwrap();
    }
}

async fn settle(service: &Service, request: Request) -> Reply {
    match handle(service, request, SocketRole::Admin, &Actor::default(), Caller::default()) {
        Handled::Now(reply) => reply,
        Handled::Verified(verdict) => Reply::Verify(verdict.into_answer()),
        Handled::Later(work) => work.await,
    }
}

#[divan::bench]
fn whole_frame(bencher: Bencher) {
    let warm = Warm::new();
    let mut out = Vec::with_capacity(1024);
    bencher.bench_local(|| {
        out.clear();
        warm.answer(&mut out);
        black_box(out.len())
    });
}

#[divan::bench]
fn token_parse(bencher: Bencher) {
    let warm = Warm::new();
    bencher.bench(|| Token::parse(black_box(warm.token.expose())).is_ok());
}

/// The hot path's decoding: the token and names borrowed from the frame.
#[divan::bench]
fn request_decode_in_place(bencher: Bencher) {
    let warm = Warm::new();
    bencher.bench(|| verify_ref::decode_verify_request(black_box(&warm.frame)).unwrap());
}

/// The same frame decoded whole, every string copied (what every other request gets).
#[divan::bench]
fn request_decode_whole(bencher: Bencher) {
    let warm = Warm::new();
    bencher.bench(|| codec::decode_request::<RequestFrame>(black_box(&warm.frame)).unwrap());
}

#[divan::bench]
fn reply_encode(bencher: Bencher) {
    let warm = Warm::new();
    let (_, request) = verify_ref::decode_verify_request(&warm.frame).unwrap();
    let Handled::Verified(verdict) = handle_verify(&warm.service, &request, Now::read(), Caller::default()) else {
        panic!("a warm verify is answered from memory");
    };
    let mut out = Vec::with_capacity(1024);
    bencher.bench_local(|| {
        out.clear();
        verdict.encode_reply(black_box(7), &mut out).unwrap()
    });
}
