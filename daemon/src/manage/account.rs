//! Accounts: which workspaces an account's legacy personal keys may act on.

use keyward_protocol::{AccountView, Actor, AuditAction};

use super::{commit, field, Draft};
use crate::error::DaemonError;
use crate::fleet;
use crate::host::clock::unix_now;
use crate::manage::validate;
use crate::service::Service;

/// Sets the workspaces of `account.account` (replacing the previous list).
pub async fn set_account(service: &Service, account: AccountView, actor: &Actor) -> Result<AccountView, DaemonError> {
    let name = validate::account(&account.account)?;
    let mut workspaces = account.workspaces.iter().map(|ws| validate::workspace(ws)).collect::<Result<Vec<_>, _>>()?;
    workspaces.sort();
    workspaces.dedup();
    let mut writing = fleet::write::begin(service).await?;
    let old = service.account_workspaces(&name).map(|list| list.join(" "));
    let changes = vec![field("workspaces", old, Some(workspaces.join(" ")))];
    let view = AccountView { account: name, workspaces };
    let draft = Draft {
        action: AuditAction::AccountSet,
        record: None,
        credits: None,
        account: Some(view),
        changes,
        at: unix_now(),
    };
    let view = commit(service, &mut writing, actor, draft).await?.account.expect("an account was committed");
    service.put_account(view.account.clone(), view.workspaces.clone());
    Ok(view)
}

/// An account's workspaces (empty when the account is unknown).
pub fn get_account(service: &Service, account: &str) -> Result<AccountView, DaemonError> {
    let account = validate::account(account)?;
    let workspaces = service.account_workspaces(&account).map(|list| list.to_vec()).unwrap_or_default();
    Ok(AccountView { account, workspaces })
}
