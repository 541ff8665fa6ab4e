//! keyward as a load target: verifies through `keyward_client::Client`, the client app servers use.
//!
//! Per request the caller clones its [`VerifyRequest`] (an app server builds one per incoming request:
//! the token and the scope are two small strings) and calls [`Client::verify`], which encodes the frame
//! with bincode, queues it on a pooled connection, waits for the reply by id and decodes it. Anything but
//! `VALID` counts as a failure.

use std::sync::Arc;

use keyward_client::{Client, ClientError, ErrorCode, Secret, VerifyCode, VerifyRequest};

use crate::load::{Caller, Rng};

/// The scope every benchmark verify requires.
pub const SCOPE: &str = "read:tables";
/// The scopes of every benchmark key.
pub const KEY_SCOPES: [&str; 2] = ["read:tables", "write:forms"];
/// A custom rate so high that no benchmark ever reaches it ("a plan limit that does not refuse").
pub const RATE: &str = "1000000000/s";

/// A verify of `token` requiring [`SCOPE`].
pub fn request(token: Secret) -> VerifyRequest {
    VerifyRequest { scope: Some(SCOPE.to_owned()), ..VerifyRequest::new(token) }
}

/// The same token every time.
#[derive(Clone)]
pub struct OneKey {
    pub client: Client,
    pub request: VerifyRequest,
}

impl Caller for OneKey {
    async fn call(&mut self) -> bool {
        matches!(self.client.verify(self.request.clone()).await, Ok(answer) if answer.code == VerifyCode::Valid)
    }
}

/// A token picked uniformly at random from a set for every request.
pub struct RandomKey {
    pub client: Client,
    pub tokens: Arc<Vec<Secret>>,
    pub rng: Rng,
}

impl Caller for RandomKey {
    async fn call(&mut self) -> bool {
        let token = self.tokens[self.rng.below(self.tokens.len() as u64) as usize].clone();
        matches!(self.client.verify(request(token)).await, Ok(answer) if answer.code == VerifyCode::Valid)
    }
}

/// How a verify ended, for scenarios that count outcomes rather than expect `VALID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered(VerifyCode),
    /// The Argon2 queue was full.
    Busy,
    /// Any other error (timeout, closed connection, refusal).
    Failed,
}

/// Verifies `request` and classifies the result.
pub async fn outcome(client: &Client, request: VerifyRequest) -> Outcome {
    match client.verify(request).await {
        Ok(answer) => Outcome::Answered(answer.code),
        Err(error @ ClientError::Refused(_)) if error.code() == Some(ErrorCode::Busy) => Outcome::Busy,
        Err(_) => Outcome::Failed,
    }
}
