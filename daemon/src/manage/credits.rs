//! Credit balances set or topped up by an operator (`keyward credits KEY_ID --set N | --add N`). In fleet
//! mode either sets the fleet's balance anew (`--add` on what the engine has left), which voids what hosts
//! were granted of the old one: the fleet may under-spend by those grants, never over-spend.

use keyward_protocol::{Actor, AuditAction, CreditChange, KeyView, Limits};

use super::change::{change_key_in, changeable, Outcome};
use super::field;
use crate::error::DaemonError;
use crate::fleet;
use crate::keys::record::KeyRecord;
use crate::manage::validate;
use crate::service::Service;

/// Sets or adds to a key's credits; `Set` also gives credits to a key that had none.
pub async fn change_credits(
    service: &Service,
    id: &str,
    change: CreditChange,
    actor: &Actor,
) -> Result<KeyView, DaemonError> {
    let id = validate::key_id(id)?;
    let mut writing = fleet::write::begin(service).await?;
    // In fleet mode the balance is the fleet's, in the engine; a host's cell holds only its grant.
    let escrowed = writing.escrowed_credits(id.as_str()).await?;
    change_key_in(service, writing, &id, actor, AuditAction::Credits, None, |old, now| {
        changeable(&old.record)?;
        let live = escrowed.or_else(|| old.credits.as_ref().map(|cell| (cell.balance(), cell.refilled_at())));
        let balance = match (change, live) {
            (CreditChange::Set(n), _) => n,
            (CreditChange::Add(n), Some((balance, _))) => balance.saturating_add(n),
            (CreditChange::Add(_), None) => {
                return Err(DaemonError::Conflict(format!(
                    "key {} has no credits; give it a balance with --set first",
                    old.record.id
                )))
            }
        };
        let refilled_at = live.map_or(now, |(_, at)| at);
        let changes = vec![field("credits", live.map(|(b, _)| b.to_string()), Some(balance.to_string()))];
        let limits = Limits { credits: Some(balance), ..old.record.limits.clone() };
        let record = KeyRecord { limits, ..old.record.clone() };
        Ok(Outcome { credits: Some((balance, refilled_at)), ..Outcome::new(record, changes) })
    })
    .await
}
