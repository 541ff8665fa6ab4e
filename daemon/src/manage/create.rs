//! New keys: minted by keyward ([`create`]) or taken over from another system
//! ([`import`]).

use keyward_protocol::token::{Token, PREFIX_LEN, TAIL_LEN};
use keyward_protocol::{
    Actor, AuditAction, CreateRequest, CreatedKey, Environment, ImportRequest, KeyOrigin, KeyView, Role,
};
use zeroize::Zeroizing;

use super::{commit, expiry_text, field, view, Draft};
use crate::error::DaemonError;
use crate::fleet;
use crate::host::clock::unix_now;
use crate::keys::hot::HotKey;
use crate::keys::record::{KeyRecord, KeyState, StoredSecret};
use crate::manage::validate;
use crate::secrets::mint;
use crate::service::Service;

/// The settings every new key is made from, validated.
struct Settings {
    workspace: String,
    name: String,
    description: Option<String>,
    scopes: Vec<String>,
    role: Role,
    metadata: std::collections::BTreeMap<String, String>,
    expires_at: Option<i64>,
    limits: keyward_protocol::Limits,
}

impl Settings {
    fn into_record(self, id: keyward_protocol::KeyId, env: Environment, now: i64, secret: StoredSecret) -> KeyRecord {
        KeyRecord {
            id,
            env,
            workspace: self.workspace,
            name: self.name,
            description: self.description,
            scopes: self.scopes.into(),
            role: self.role,
            metadata: self.metadata,
            created_at: now,
            expires_at: self.expires_at,
            revoked_at: None,
            state: KeyState::Active,
            origin: KeyOrigin::Generated,
            account: None,
            secret,
            previous: None,
            limits: self.limits,
        }
    }
}

/// The fields create and import share.
struct Requested<'a> {
    workspace: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    scopes: &'a [String],
    role: Role,
    metadata: &'a std::collections::BTreeMap<String, String>,
    expires: keyward_protocol::ExpirySpec,
    limits: &'a keyward_protocol::Limits,
}

/// Borrows the settings fields `CreateRequest` and `ImportRequest` share (they have the same names).
macro_rules! requested {
    ($request:expr) => {
        Requested {
            workspace: &$request.workspace,
            name: &$request.name,
            description: $request.description.as_deref(),
            scopes: &$request.scopes,
            role: $request.role,
            metadata: &$request.metadata,
            expires: $request.expires,
            limits: &$request.limits,
        }
    };
}

fn settings(requested: Requested<'_>, now: i64, plans: &crate::limits::Plans) -> Result<Settings, DaemonError> {
    let scopes = validate::scopes(requested.scopes)?;
    validate::role_allows(requested.role, &scopes)?;
    validate::metadata(requested.metadata)?;
    Ok(Settings {
        workspace: validate::workspace(requested.workspace)?,
        name: validate::name(requested.name)?,
        description: validate::description(requested.description)?,
        scopes,
        role: requested.role,
        metadata: requested.metadata.clone(),
        expires_at: validate::expiry(requested.expires, now)?,
        limits: validate::limits(requested.limits, plans)?,
    })
}

/// The public ends of a token shown in listings: up to 8 leading and 4 trailing characters, but never more
/// than a quarter of the token, so a short imported token is not mostly given away by its preview.
fn public_ends(token: &str) -> (String, String) {
    let budget = token.len() / 4;
    let prefix = PREFIX_LEN.min(budget);
    let tail = TAIL_LEN.min(budget - prefix);
    (token[..prefix].to_owned(), token[token.len() - tail..].to_owned())
}

/// A fresh key id nobody has. Call under the write lock.
fn unused_key_id(service: &Service) -> keyward_protocol::KeyId {
    loop {
        let candidate = mint::key_id();
        if !service.index().contains(candidate.as_str()) {
            return candidate;
        }
    }
}

/// Mints a new secret and its hash (Argon2 runs outside the write lock).
pub(super) async fn new_secret(service: &Service) -> Result<(Zeroizing<[u8; 32]>, String), DaemonError> {
    let secret = mint::secret();
    let phc = service.hasher().hash(Zeroizing::new(secret.to_vec())).await?;
    Ok((secret, phc))
}

/// Creates a key and returns its token: the only time the token exists outside the caller's hands.
pub async fn create(service: &Service, request: CreateRequest, actor: &Actor) -> Result<CreatedKey, DaemonError> {
    let now = unix_now();
    let settings = settings(requested!(request), now, &service.plans())?;
    let (secret, phc) = new_secret(service).await?;
    let mut writing = fleet::write::begin(service).await?;
    let id = unused_key_id(service);
    let token = Token::assemble(request.env, &id, &secret);
    let parsed = Token::parse(token.expose()).expect("an assembled token parses");
    let stored = StoredSecret {
        phc: phc.into(),
        prefix: parsed.prefix().to_owned(),
        tail: parsed.tail().to_owned(),
        lookup: None,
    };
    let record = settings.into_record(id, request.env, now, stored);
    let changes = vec![
        field("name", None, Some(record.name.clone())),
        field("scopes", None, Some(record.scopes.join(" "))),
        field("role", None, Some(record.role.to_string())),
        field("expires_at", None, expiry_text(record.expires_at)),
        field("rate", None, Some(record.limits.rate.to_string())),
    ];
    let record =
        commit(service, &mut writing, actor, Draft::key(AuditAction::Create, record, changes, now)).await?.record;
    let key = HotKey::new(record.expect("a key was committed"), service.fresh_counters(), &service.plans());
    // The daemon has just hashed this very secret, so the first verify need not pay for Argon2 again.
    key.current.warm.set(service.hasher().digest(&secret[..]));
    let view = view(service, &key, now);
    // In fleet mode its escrowed credits ask for their first grant at once.
    service.top_up_credits(&service.index().put(key));
    Ok(CreatedKey { token, key: view })
}

/// Takes over a token issued elsewhere: stores its Argon2id hash and a keyed lookup digest, so it
/// verifies as it is.
pub async fn import(service: &Service, request: ImportRequest, actor: &Actor) -> Result<KeyView, DaemonError> {
    let now = unix_now();
    let text = request.token.expose();
    validate::importable_token(text)?;
    let settings = settings(requested!(request), now, &service.plans())?;
    let account = request.legacy_account.as_deref().map(validate::account).transpose()?;
    let env = Token::parse(text).map(|t| t.env()).unwrap_or_default();
    let lookup = service.hasher().lookup_digest(text.as_bytes());
    let phc = service.hasher().hash(Zeroizing::new(text.as_bytes().to_vec())).await?;

    let mut writing = fleet::write::begin(service).await?;
    if let Some(existing) = service.index().find_imported(&lookup) {
        return Err(DaemonError::Conflict(format!("this token is already imported as key {existing}")));
    }
    if Token::parse(text).is_ok_and(|t| service.index().contains(t.key_id())) {
        return Err(DaemonError::Conflict("this token belongs to a key keyward already has".into()));
    }
    let (prefix, tail) = public_ends(text);
    let stored = StoredSecret { phc: phc.into(), prefix, tail, lookup: Some(lookup) };
    let mut record = settings.into_record(unused_key_id(service), env, now, stored);
    record.origin = if account.is_some() { KeyOrigin::Legacy } else { KeyOrigin::Imported };
    record.account = account;
    let mut changes = vec![
        field("name", None, Some(record.name.clone())),
        field("scopes", None, Some(record.scopes.join(" "))),
        field("origin", None, Some(record.origin.as_str().to_owned())),
    ];
    if let Some(account) = &record.account {
        changes.push(field("account", None, Some(account.clone())));
    }
    let record =
        commit(service, &mut writing, actor, Draft::key(AuditAction::Import, record, changes, now)).await?.record;
    let key = HotKey::new(record.expect("a key was committed"), service.fresh_counters(), &service.plans());
    key.current.warm.set(service.hasher().digest(text.as_bytes()));
    let view = view(service, &key, now);
    // In fleet mode its escrowed credits ask for their first grant at once.
    service.top_up_credits(&service.index().put(key));
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::public_ends;

    #[test]
    fn previews_reveal_at_most_a_quarter() {
        let keyward = "kw_live_AbCdEf012345_0123456789abcdefghijABCDEFGHIJxy4gfFC3";
        assert_eq!(public_ends(keyward), ("kw_live_".into(), "fFC3".into()));
        assert_eq!(public_ends("0123456789abcdef"), ("0123".into(), String::new()));
        assert_eq!(public_ends("sk_prod_3f9a1c7e2b8d4056a1c2e3f4"), ("sk_prod_".into(), String::new()));
    }
}
