//! Load shapes, and how each target is driven under one.
//!
//! - `Connections(n)`: `n` workers, each with one request outstanding, over a pool of `n` connections
//!   (closed loop). `Connections(1)` is the one-at-a-time round trip the latency figures come from.
//! - `Pipelined(d)`: `d` workers over a pool of one connection: `d` requests in flight on it.
//!
//! The pooled clients (keyward's, the echo floor's, the RESP one) pick a connection round-robin per
//! request, so with `n` workers on `n` connections each connection carries one request on average, not
//! strictly; the raw echo gives each worker its own connection.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use keyward_client::{Client, Secret, VerifyRequest};

use crate::echo::{self, EchoClient, RawEcho};
use crate::load::{closed_loop, Caller, Measurement, Phase, Rng};
use crate::resp::{RedisCall, RedisClient, RedisVerifier};
use crate::verifier::{OneKey, RandomKey};

/// How requests are spread over connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Connections(usize),
    Pipelined(usize),
}

impl Shape {
    /// The shapes of the warm-verify comparison, in table order.
    pub const ALL: [Shape; 5] = [
        Shape::Connections(1),
        Shape::Connections(8),
        Shape::Connections(32),
        Shape::Pipelined(16),
        Shape::Pipelined(64),
    ];

    /// `conns:N` or `pipelined:N`.
    pub fn parse(text: &str) -> Result<Shape> {
        let parsed = match text.split_once(':') {
            Some(("conns", n)) => n.parse().ok().map(Shape::Connections),
            Some(("pipelined", n)) => n.parse().ok().map(Shape::Pipelined),
            _ => None,
        };
        parsed.filter(|s| s.workers() > 0).ok_or_else(|| anyhow::anyhow!("bad shape {text:?}: conns:N or pipelined:N"))
    }

    pub fn label(self) -> String {
        match self {
            Shape::Connections(1) => "1 connection, 1 request at a time".to_owned(),
            Shape::Connections(n) => format!("{n} connections, 1 outstanding each"),
            Shape::Pipelined(d) => format!("1 connection, pipelined depth {d}"),
        }
    }

    /// Connections in the pool.
    pub fn pool(self) -> usize {
        match self {
            Shape::Connections(n) => n,
            Shape::Pipelined(_) => 1,
        }
    }

    /// Concurrent workers.
    pub fn workers(self) -> usize {
        match self {
            Shape::Connections(n) | Shape::Pipelined(n) => n,
        }
    }
}

async fn drive_clones<C: Caller + Clone>(caller: C, workers: usize, phase: Phase) -> Measurement {
    closed_loop(vec![caller; workers], phase).await
}

/// The echo server through direct socket use.
pub async fn raw(socket: &Path, shape: Shape, phase: Phase) -> Result<Measurement> {
    match shape {
        Shape::Connections(n) => {
            let mut callers = Vec::with_capacity(n);
            for _ in 0..n {
                callers.push(RawEcho::connect(socket).await.context("connecting to the echo server")?);
            }
            Ok(closed_loop(callers, phase).await)
        }
        Shape::Pipelined(depth) => echo::raw_pipelined(socket, depth, phase).await.context("raw pipelined echo"),
    }
}

/// The echo server through the pooled client: the floor.
pub async fn floor(socket: &Path, shape: Shape, phase: Phase) -> Result<Measurement> {
    let client = EchoClient::connect(socket, shape.pool()).await.context("connecting to the echo server")?;
    Ok(drive_clones(client, shape.workers(), phase).await)
}

/// A keyward client for `socket` with `pool` connections, all open.
pub async fn keyward_client(socket: &Path, pool: usize) -> Result<Client> {
    Client::builder(socket).pool_size(pool).connect().await.context("connecting to keywardd")
}

/// keywardd verifying one warm token.
pub async fn keyward(socket: &Path, shape: Shape, phase: Phase, request: &VerifyRequest) -> Result<Measurement> {
    let client = keyward_client(socket, shape.pool()).await?;
    Ok(drive_clones(OneKey { client, request: request.clone() }, shape.workers(), phase).await)
}

/// keywardd verifying a token picked at random from `tokens` per request.
pub async fn keyward_random(
    socket: &Path,
    shape: Shape,
    phase: Phase,
    tokens: &Arc<Vec<Secret>>,
) -> Result<Measurement> {
    let client = keyward_client(socket, shape.pool()).await?;
    let callers = (0..shape.workers())
        .map(|i| RandomKey { client: client.clone(), tokens: Arc::clone(tokens), rng: Rng::new(i as u64 + 1) })
        .collect();
    Ok(closed_loop(callers, phase).await)
}

/// Redis running the verify script for one token.
pub async fn redis(socket: &Path, shape: Shape, phase: Phase, call: &Arc<RedisCall>) -> Result<Measurement> {
    let client = RedisClient::connect(socket, shape.pool()).await.context("connecting to redis")?;
    Ok(drive_clones(RedisVerifier { client, call: Arc::clone(call) }, shape.workers(), phase).await)
}
