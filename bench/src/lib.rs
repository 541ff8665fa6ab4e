//! The keyward load benchmark: `keywardd` driven through `keyward_client::Client`, measured side by side
//! with a floor (an echo server with the same framing) and a peer (Redis running one EVALSHA per verify),
//! in one run on one machine, and reported as ratios so that a noisy machine cancels out.
//!
//! `bench/run.sh` builds the binaries in release, starts Redis, runs `keyward-bench run`, and writes the
//! table into `BENCHMARKS.md`. Nothing here runs under `cargo test` beyond small unit tests.
//!
//! # Layout
//! - [`load`]: the closed-loop generator, the measurement (HDR histogram), a small PRNG.
//! - [`shape`]: load shapes (connections, pipelining depth) and how each target is driven under them.
//! - [`echo`]: the floor — echo server, pooled client built like keyward's, raw socket clients.
//! - [`resp`]: the peer — a pooled RESP client and the Lua verify script.
//! - [`verifier`]: keyward as a target: verify callers over `keyward_client::Client`.
//! - [`process`]: starting, timing, measuring and stopping `keywardd` and the echo server.
//! - [`seed`]: writing large key fixtures straight into a stopped daemon's store.
//! - [`fixture`]: the template key a fixture is copied from.
//! - [`scenario`]: the scenarios, one module each, and the run that strings them together.
//! - [`report`]: the table.
//! - [`fleet`]: `keyward-bench fleet`, the fleet-mode targets against a throw-away PostgreSQL and real hosts.
//! - [`forward_auth`]: `keyward-bench forward-auth`, the HTTP endpoint behind nginx against nginx alone.

pub mod echo;
pub mod fixture;
pub mod fleet;
pub mod forward_auth;
pub mod load;
pub mod process;
pub mod report;
pub mod resp;
pub mod scenario;
pub mod seed;
pub mod shape;
pub mod verifier;
