//! The template key: created once through the admin API, so that every seeded copy carries exactly what
//! the running daemon stores for a key created the ordinary way (its hash algorithm and cost included).
//! When the daemon changes how it hashes new keys, the fixtures follow without a change here.

use anyhow::{anyhow, ensure, Context, Result};
use keyward_client::{CreateRequest, ExpirySpec, Secret, VerifyCode};
use keyward_daemon::internals::KeyRecord;
use keyward_protocol::token::{Token, SECRET_LEN};
use keyward_protocol::RatePolicy;
use tokio::runtime::Runtime;

use crate::process::Daemon;
use crate::seed;
use crate::shape::keyward_client;
use crate::verifier::{self, KEY_SCOPES, RATE};

/// A key created through the API, read back from the store.
pub struct Template {
    pub record: KeyRecord,
    /// The secret part of its token, shared by every seeded copy.
    pub secret: [u8; SECRET_LEN],
    pub token: Secret,
}

/// The create request every benchmark key is made from: two scopes, a rate that never refuses, no expiry.
pub fn create_request(workspace: &str, name: &str) -> Result<CreateRequest> {
    let mut request = CreateRequest::new(workspace, name, KEY_SCOPES.iter().map(|s| s.to_string()).collect());
    request.expires = ExpirySpec::Never;
    request.limits.rate = RatePolicy::Custom(RATE.parse().map_err(|e| anyhow!("{e}"))?);
    Ok(request)
}

/// Starts `daemon` (on an empty data directory), creates the template key in `workspace`, checks it
/// verifies, stops the daemon and reads the key's stored record back.
pub fn template(rt: &Runtime, daemon: &mut Daemon, workspace: &str) -> Result<Template> {
    daemon.start()?;
    let (token, id) = rt.block_on(async {
        let admin = keyward_client(&daemon.admin_socket(), 1).await?;
        let created =
            admin.create(create_request(workspace, "bench template")?).await.context("creating the template")?;
        let client = keyward_client(&daemon.verify_socket(), 1).await?;
        let answer = client.verify(verifier::request(created.token.clone())).await?;
        ensure!(answer.code == VerifyCode::Valid, "the template key verified as {}", answer.code);
        Ok::<_, anyhow::Error>((created.token, created.key.id))
    })?;
    daemon.stop()?;
    let record = seed::read_record(daemon.data_dir(), &id)?;
    let parsed = Token::parse(token.expose()).map_err(|e| anyhow!("the template's token: {e}"))?;
    let secret: [u8; SECRET_LEN] = parsed.secret().try_into().context("a token's secret is 32 characters")?;
    Ok(Template { record, secret, token })
}
