//! What the `keyward` command line accepts: the clap definitions, and the checks that make a bad scope,
//! expiry, rate, limit, refill, metadata entry or grace window a usage error (exit status 2) before anything
//! is sent. The daemon checks everything again.
//!
//! Rates, refills and named limits are parsed by `keyward_protocol::limits`, so the CLI accepts exactly the
//! spellings the daemon documents.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::trust::DaemonUser;
use keyward_protocol::expiry::DEFAULT_EXPIRY;
use keyward_protocol::limits::{self, LimitSyntaxError};
use keyward_protocol::scope::{self, ScopeError};
use keyward_protocol::{
    paths, CreditChange, Environment, ExpirySpec, KeyChanges, Limits, Rate, RatePolicy, Refill, Role, Secret,
};

/// Manage and check keyward API keys through keywardd.
#[derive(Debug, Parser)]
#[command(name = "keyward", version)]
pub struct Cli {
    /// Verify socket, used by `verify` [default: $XDG_RUNTIME_DIR/keyward/verify.sock, else
    /// /tmp/keyward-$UID/verify.sock]
    #[arg(long, global = true, value_name = "PATH", env = paths::ENV_SOCKET, help_heading = "Global options")]
    pub socket: Option<PathBuf>,

    /// Admin socket, used by every other command [default: $XDG_RUNTIME_DIR/keyward/admin.sock, else
    /// /tmp/keyward-$UID/admin.sock]
    #[arg(long, global = true, value_name = "PATH", env = paths::ENV_ADMIN_SOCKET, help_heading = "Global options")]
    pub admin_socket: Option<PathBuf>,

    /// Print exactly one JSON value on stdout instead of text
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// The user keywardd runs as, if not root, you or `keyward`: the CLI sends nothing to a socket whose
    /// listener runs as anyone else (a user name or a uid)
    #[arg(long, global = true, value_name = "USER", env = "KEYWARD_DAEMON_USER", value_parser = DaemonUser::parse,
          help_heading = "Global options")]
    pub daemon_user: Option<DaemonUser>,

    /// Who is acting, recorded in the audit log with every change next to your uid and pid (e.g. the
    /// person or job behind a script); not verified
    #[arg(long, global = true, value_name = "TEXT", help_heading = "Global options")]
    pub actor: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The verify socket: `--socket`, else `KEYWARD_SOCKET`, else the default location.
    pub fn verify_socket(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(paths::default_verify_socket)
    }

    /// The admin socket: `--admin-socket`, else `KEYWARD_ADMIN_SOCKET`, else the default location.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin_socket.clone().unwrap_or_else(paths::default_admin_socket)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a key and print its token (shown this once only)
    Create(CreateArgs),
    /// List a workspace's keys, oldest first, or (with --legacy) the legacy personal keys
    List(ListArgs),
    /// Show one key
    Show {
        /// The key's id (12 letters and digits, as `list` shows it)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
    },
    /// Change a key's settings; its token stays the same and the next verify sees the change
    Edit(EditArgs),
    /// Give a key a new token with the same settings (shown this once only)
    Regenerate(RegenerateArgs),
    /// Suspend a key: its verifies answer INACTIVE until `keyward activate`
    Deactivate {
        /// The key's id (12 letters and digits, as `list` shows it)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
    },
    /// Undo `keyward deactivate`: the key's token verifies again
    Activate {
        /// The key's id (12 letters and digits, as `list` shows it)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
    },
    /// Revoke a key for good: every later verify of its token answers REVOKED
    Revoke {
        /// The key's id (12 letters and digits, as `list` shows it)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
    },
    /// Take over a token issued by another system: it keeps working as it is, and keywardd stores only its
    /// hash
    Import(ImportArgs),
    /// Check a token as an app server would (exit status 0 if valid, 1 if not)
    Verify(VerifyArgs),
    /// Show who changed which key and how, newest first
    Audit(AuditArgs),
    /// Set or show the workspaces an account's legacy personal keys may act on
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Set or add to a key's credit balance
    Credits(CreditsArgs),
    /// Show a key's verifications by outcome, or a workspace's busiest keys
    Usage(UsageArgs),
    /// Check that both sockets answer
    Ping,
    /// Show the daemon's counters: keys, connections, verifies and their latency, the Argon2 queue, the
    /// store
    Stats(StatsArgs),
    /// Set up or check fleet mode: the shared engine (PostgreSQL) and the hosts that follow it
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
}

/// What a new key is called, where it belongs and what it may do: the arguments `create` and `import`
/// share.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The workspace the key belongs to
    #[arg(long, value_name = "WS")]
    pub workspace: String,

    /// A name for people, 3 to 50 characters
    #[arg(long)]
    pub name: String,

    /// What the key is for, up to 500 characters
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// What the key may do: admin, read:RESOURCE or write:RESOURCE (RESOURCE: all, tables, …); repeat
    /// for several
    #[arg(long = "scope", value_name = "SCOPE", required = true, value_parser = parse_scope)]
    pub scopes: Vec<String>,

    /// The key's role: member or admin. Only an admin key may hold the `admin` scope
    #[arg(long, value_name = "ROLE", default_value_t = Role::Member)]
    pub role: Role,

    /// A label every valid verify returns, e.g. --meta team=billing; repeat for several (at most 4 KiB in
    /// all)
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta_entry)]
    pub metadata: Vec<(String, String)>,
}

impl KeyArgs {
    /// The metadata as a map; a key given twice keeps its last value.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        self.metadata.iter().cloned().collect()
    }
}

/// A new key's rate limit, named limits and credits: the arguments `create` and `import` share.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// The key's rate plan: free (100/min), paid (1000/min) or a plan the daemon defines [default: free]
    #[arg(long, value_name = "NAME", conflicts_with = "rate_limit")]
    pub plan: Option<String>,

    /// A rate of the key's own instead of a plan: N/s, N/min, N/h or N/d (e.g. 100/min), or `none` for no
    /// limit
    #[arg(long, value_name = "N/PERIOD|none", value_parser = parse_rate_limit)]
    pub rate_limit: Option<RatePolicy>,

    /// A limit that counts only the verifies that name it (`verify --limit NAME`), e.g. exports=10/h;
    /// repeat for several
    #[arg(long = "limit", value_name = "NAME=N/PERIOD", value_parser = parse_named_limit)]
    pub limits: Vec<(String, Rate)>,

    /// A starting credit balance: each valid verify spends its cost, and at 0 verifies answer
    /// USAGE_EXCEEDED [default: no credits, no such limit]
    #[arg(long, value_name = "N")]
    pub credits: Option<u64>,

    /// When the credit balance is reset to a fixed amount: `N/day`, or `N/month[@DAY]` (e.g. 5000/month@1;
    /// 00:00 UTC)
    #[arg(long, value_name = "N/day|N/month[@DAY]")]
    pub refill: Option<Refill>,
}

impl LimitArgs {
    /// The limits to ask for: `--plan` or `--rate-limit` (else the default plan), the named limits (a name
    /// given twice keeps its last rate), credits and refill.
    pub fn limits(&self) -> Limits {
        Limits {
            rate: rate_policy(self.plan.as_deref(), self.rate_limit.as_ref()).unwrap_or_default(),
            named: self.limits.iter().cloned().collect(),
            credits: self.credits,
            refill: self.refill,
        }
    }
}

/// `--plan` or `--rate-limit`, whichever was given (clap lets through at most one).
fn rate_policy(plan: Option<&str>, rate_limit: Option<&RatePolicy>) -> Option<RatePolicy> {
    plan.map(|name| RatePolicy::Plan(name.to_owned())).or_else(|| rate_limit.cloned())
}

/// Arguments of `keyward create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub key: KeyArgs,

    /// When the key expires: never, 15d, 25d, 30d, 45d, 90d, 6m, 1y, or an RFC 3339 time such as
    /// 2027-01-31T00:00:00Z
    #[arg(long, value_name = "PRESET|RFC3339", default_value_t = DEFAULT_EXPIRY)]
    pub expires: ExpirySpec,

    /// The key's environment: live or test
    #[arg(long, value_name = "ENV", default_value_t = Environment::Live)]
    pub env: Environment,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Arguments of `keyward list`: a workspace, or the legacy keys.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("listing").required(true).args(["workspace", "legacy"])))]
pub struct ListArgs {
    /// The workspace to list
    #[arg(long, value_name = "WS")]
    pub workspace: Option<String>,

    /// List legacy personal keys instead (of every account, or of --account), with when each was last
    /// used
    #[arg(long)]
    pub legacy: bool,

    /// Only this account's legacy keys
    #[arg(long, value_name = "ACCOUNT", requires = "legacy", conflicts_with = "workspace")]
    pub account: Option<String>,
}

/// Arguments of `keyward edit`. At least one setting must be given; `run` says so when none is, since a
/// clap group of ten flags would spell all of them out in every usage line.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The key's id (12 letters and digits, as `list` shows it)
    #[arg(value_name = "KEY_ID")]
    pub key_id: String,

    /// A new name, 3 to 50 characters
    #[arg(long)]
    pub name: Option<String>,

    /// A new description; "" clears it
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// The key's new scopes, replacing all the old ones; repeat for several
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    pub scopes: Vec<String>,

    /// A new role: member or admin (a member key cannot hold the `admin` scope)
    #[arg(long, value_name = "ROLE")]
    pub role: Option<Role>,

    /// A new expiry: a preset counted from now (15d, 25d, 30d, 45d, 90d, 6m, 1y), an RFC 3339 time, or
    /// never to clear it
    #[arg(long, value_name = "PRESET|RFC3339|never")]
    pub expires: Option<ExpirySpec>,

    /// Set a metadata entry, or remove it with an empty value (--meta team=); repeat for several
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta_change)]
    pub metadata: Vec<(String, String)>,

    /// Move the key to this rate plan
    #[arg(long, value_name = "NAME", conflicts_with = "rate_limit")]
    pub plan: Option<String>,

    /// Give the key a rate of its own (N/s, N/min, N/h or N/d), or `none` for no limit
    #[arg(long, value_name = "N/PERIOD|none", value_parser = parse_rate_limit)]
    pub rate_limit: Option<RatePolicy>,

    /// Set a named limit (exports=10/h) or remove it (exports=none); repeat for several
    #[arg(long = "limit", value_name = "NAME=N/PERIOD|NAME=none", value_parser = parse_limit_change)]
    pub limits: Vec<(String, Option<Rate>)>,

    /// A new refill schedule (`N/day` or `N/month[@DAY]`), or `none` to stop refilling
    #[arg(long, value_name = "SPEC|none", value_parser = parse_refill_change)]
    pub refill: Option<RefillChange>,
}

impl EditArgs {
    /// The changes to send; settings not given stay as they are.
    pub fn changes(&self) -> KeyChanges {
        KeyChanges {
            name: self.name.clone(),
            description: self.description.clone(),
            scopes: (!self.scopes.is_empty()).then(|| self.scopes.clone()),
            role: self.role,
            expires: self.expires,
            metadata: self.metadata.iter().cloned().collect(),
            rate: rate_policy(self.plan.as_deref(), self.rate_limit.as_ref()),
            named_limits: self.limits.iter().cloned().collect(),
            refill: self.refill.map(|change| change.0),
        }
    }
}

/// `edit --refill`: a new schedule, or `None` (spelled `none`) to remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefillChange(pub Option<Refill>);

/// Arguments of `keyward regenerate`.
#[derive(Debug, Args)]
pub struct RegenerateArgs {
    /// The key's id (12 letters and digits, as `list` shows it)
    #[arg(value_name = "KEY_ID")]
    pub key_id: String,

    /// How long the old token keeps working: a number and s, m, h or d (30s, 15m, 1h, 24h, 7d); 0s stops it
    /// at once. Never past the key's expiry; at most 30d
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_grace)]
    pub grace: u64,
}

/// Arguments of `keyward import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub key: KeyArgs,

    /// Import a legacy personal key of --account: it may act on every workspace of its account (see
    /// `keyward account set`), can only be viewed and revoked, and stops working at the daemon's legacy
    /// sunset
    #[arg(long, requires = "account")]
    pub legacy: bool,

    /// The account a legacy key belongs to (with --legacy)
    #[arg(long, value_name = "ACCOUNT", requires = "legacy")]
    pub account: Option<String>,

    /// When the key expires: never, 15d, 25d, 30d, 45d, 90d, 6m, 1y, or an RFC 3339 time. The default is
    /// never, unlike `create`: an imported token already had its own lifetime in the system it comes
    /// from, so give it the expiry it had there
    #[arg(long, value_name = "PRESET|RFC3339", default_value_t = ExpirySpec::Never)]
    pub expires: ExpirySpec,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// The token to take over (16 to 512 printable characters, any format), or `-` to read it from stdin
    /// (which keeps it out of the process list and shell history)
    #[arg(value_name = "TOKEN", value_parser = parse_token)]
    pub token: TokenArg,
}

/// Arguments of `keyward verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Require the key to hold this scope (or one that implies it)
    #[arg(long, value_name = "SCOPE", value_parser = parse_scope)]
    pub scope: Option<String>,

    /// Require the key to belong to this workspace (a legacy key: to one of its account's)
    #[arg(long, value_name = "WS")]
    pub workspace: Option<String>,

    /// What the request costs against rate limits and credits; 0 checks without spending anything
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cost: u32,

    /// A named limit of the key this request also counts against (all or nothing); repeat for several
    #[arg(long = "limit", value_name = "NAME")]
    pub limits: Vec<String>,

    /// The token, or `-` to read it from stdin (which keeps it out of the process list and shell history)
    #[arg(value_name = "TOKEN", value_parser = parse_token)]
    pub token: TokenArg,
}

/// Arguments of `keyward audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only changes to keys of this workspace
    #[arg(long, value_name = "WS")]
    pub workspace: Option<String>,

    /// Only changes to this key
    #[arg(long = "key", value_name = "KEY_ID")]
    pub key_id: Option<String>,

    /// Only changes at or after this RFC 3339 time, e.g. 2026-11-01T00:00:00Z
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub since: Option<i64>,

    /// At most this many entries [default: the daemon's, 100]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// `keyward account` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Set the workspaces an account's legacy keys may act on, replacing the previous list
    Set {
        /// The account
        #[arg(value_name = "ACCOUNT")]
        account: String,

        /// A workspace the account's legacy keys may act on; repeat for several
        #[arg(long = "workspace", value_name = "WS", required = true)]
        workspaces: Vec<String>,
    },
    /// Show the workspaces an account's legacy keys may act on
    Show {
        /// The account
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
}

/// `keyward fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Create or upgrade the fleet engine's schema and, on a new fleet, import this host's keys, accounts,
    /// audit log and credits (tokens unchanged)
    Init,
    /// Show the fleet engine, each host, the change it has applied and how far behind it is
    Status,
}

/// Arguments of `keyward credits`: exactly one of `--set` and `--add`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).args(["set", "add"])))]
pub struct CreditsArgs {
    /// The key's id (12 letters and digits, as `list` shows it)
    #[arg(value_name = "KEY_ID")]
    pub key_id: String,

    /// Set the balance to N (also gives credits to a key that had none)
    #[arg(long, value_name = "N")]
    pub set: Option<u64>,

    /// Add N to the balance
    #[arg(long, value_name = "N")]
    pub add: Option<u64>,
}

impl CreditsArgs {
    /// The change to send.
    pub fn change(&self) -> CreditChange {
        match (self.set, self.add) {
            (Some(n), _) => CreditChange::Set(n),
            (None, Some(n)) => CreditChange::Add(n),
            (None, None) => unreachable!("clap requires --set or --add"),
        }
    }
}

/// Arguments of `keyward usage`: a key id or `--workspace`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["key_id", "workspace"])))]
pub struct UsageArgs {
    /// The key's id: its verifications by outcome, in total, per hour and per day
    #[arg(value_name = "KEY_ID")]
    pub key_id: Option<String>,

    /// A workspace: each of its keys' totals, busiest first
    #[arg(long, value_name = "WS")]
    pub workspace: Option<String>,
}

/// Arguments of `keyward stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print the counters in the Prometheus text exposition format (for node_exporter's textfile
    /// collector or a scrape wrapper) instead of text; not with --json
    #[arg(long, conflicts_with = "json")]
    pub prometheus: bool,
}

/// Where `verify` and `import` get their token.
#[derive(Clone, Debug)]
pub enum TokenArg {
    /// `-`: read it from stdin.
    Stdin,
    /// Given on the command line.
    Given(Secret),
}

/// Checks a scope argument with the protocol's own rules.
fn parse_scope(text: &str) -> Result<String, ScopeError> {
    scope::validate(text)?;
    Ok(text.to_owned())
}

/// Wraps the token at once, so that even a `{:?}` of the parsed arguments cannot show it.
fn parse_token(text: &str) -> Result<TokenArg, Infallible> {
    Ok(match text {
        "-" => TokenArg::Stdin,
        token => TokenArg::Given(Secret::new(token)),
    })
}

/// `--rate-limit`: `none` or a rate.
fn parse_rate_limit(text: &str) -> Result<RatePolicy, LimitSyntaxError> {
    RatePolicy::parse_rate_limit(text)
}

/// `--limit NAME=N/PERIOD` of create and import.
fn parse_named_limit(text: &str) -> Result<(String, Rate), LimitSyntaxError> {
    limits::parse_named_limit(text)
}

/// `edit --limit`: `NAME=N/PERIOD` sets a limit, `NAME=none` removes it.
fn parse_limit_change(text: &str) -> Result<(String, Option<Rate>), LimitSyntaxError> {
    match text.split_once('=') {
        Some((name, "none")) => Ok((name.to_owned(), None)),
        _ => limits::parse_named_limit(text).map(|(name, rate)| (name, Some(rate))),
    }
}

/// `edit --refill`: a refill, or `none`.
fn parse_refill_change(text: &str) -> Result<RefillChange, LimitSyntaxError> {
    match text {
        "none" => Ok(RefillChange(None)),
        spec => spec.parse().map(|refill| RefillChange(Some(refill))),
    }
}

/// `--meta KEY=VALUE` of create and import: a new key has no entry to remove, so the value must not be
/// empty.
fn parse_meta_entry(text: &str) -> Result<(String, String), String> {
    match parse_meta_change(text)? {
        (key, value) if value.is_empty() => {
            Err(format!("metadata entry {key:?} has no value: expected KEY=VALUE, e.g. team=billing"))
        }
        entry => Ok(entry),
    }
}

/// `edit --meta KEY=VALUE`: an empty value removes the entry.
fn parse_meta_change(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("bad metadata entry {text:?}: expected KEY=VALUE, e.g. team=billing")),
    }
}

/// The largest count `--grace` takes in any unit. The daemon owns the real limit (30 days) and says so in
/// its refusal; the client only refuses a count whose seconds would not fit in a `u64`.
const MAX_DURATION_COUNT: u64 = u64::MAX / 86_400;

/// `--grace`: a count and a unit, `s`, `m` (minutes), `h` or `d`, e.g. `0s`, `30s`, `15m`, `24h`, `7d`;
/// in seconds.
pub(crate) fn parse_grace(text: &str) -> Result<u64, String> {
    let bad = || format!("bad duration {text:?}: expected a number and s, m, h or d, e.g. 0s, 30s, 15m, 1h, 7d");
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (count, unit) = text.split_at(unit_at);
    let count: u64 = count.parse().map_err(|_| bad())?;
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if count > MAX_DURATION_COUNT {
        let days = keyward_protocol::lifecycle::MAX_GRACE_SECONDS / 86_400;
        return Err(format!("duration {text:?} is far too long: the daemon allows at most {days}d"));
    }
    Ok(count * seconds_per)
}

/// An RFC 3339 time as Unix seconds.
fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<jiff::Timestamp>()
        .map(|at| at.as_second())
        .map_err(|_| format!("bad time {text:?}: expected an RFC 3339 time such as 2026-11-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    use keyward_protocol::limits::Period;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["keyward", "--socket", "/v.sock", "--admin-socket", "/a.sock"], args].concat())
    }

    fn kind(args: &[&str]) -> ErrorKind {
        parse(args).expect_err("a usage error").kind()
    }

    const CREATE: [&str; 7] = ["create", "--workspace", "ws", "--name", "ci", "--scope", "read:all"];

    fn create(extra: &[&str]) -> Result<CreateArgs, clap::Error> {
        match parse(&[&CREATE[..], extra].concat())?.command {
            Command::Create(args) => Ok(args),
            other => panic!("not create: {other:?}"),
        }
    }

    fn edit(extra: &[&str]) -> Result<EditArgs, clap::Error> {
        match parse(&[&["edit", "AbCdEf012345"], extra].concat())?.command {
            Command::Edit(args) => Ok(args),
            other => panic!("not edit: {other:?}"),
        }
    }

    fn rate(text: &str) -> Rate {
        text.parse().unwrap()
    }

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_accepted_before_or_after_the_subcommand() {
        let before = Cli::try_parse_from(["keyward", "--json", "list", "--workspace", "ws"]).unwrap();
        let after = Cli::try_parse_from(["keyward", "list", "--workspace", "ws", "--json"]).unwrap();
        assert!(before.json && after.json);
        assert!(
            matches!(after.command, Command::List(ListArgs { workspace: Some(ws), legacy: false, .. }) if ws == "ws")
        );
        assert!(!parse(&["ping"]).unwrap().json);
    }

    #[test]
    fn actor_is_global() {
        let cli = parse(&["--actor", "alice@dashboard", "revoke", "AbCdEf012345"]).unwrap();
        assert_eq!(cli.actor.as_deref(), Some("alice@dashboard"));
        let cli = parse(&["deactivate", "AbCdEf012345", "--actor", "deploy job"]).unwrap();
        assert_eq!(cli.actor.as_deref(), Some("deploy job"));
        assert_eq!(parse(&["ping"]).unwrap().actor, None);
    }

    #[test]
    fn create_has_defaults_and_repeatable_scopes() {
        let args = create(&["--scope", "admin"]).unwrap();
        assert_eq!(args.key.scopes, ["read:all", "admin"]);
        assert_eq!(args.key.role, Role::Member, "the admin scope does not imply the role: the daemon refuses");
        assert_eq!(args.expires, DEFAULT_EXPIRY);
        assert_eq!(args.env, Environment::Live);
        assert_eq!(args.key.description, None);
        assert_eq!(args.limits.limits(), Limits::default(), "the free plan, no named limits, no credits");
        assert!(args.key.metadata().is_empty());

        let args =
            create(&["--expires", "never", "--env", "test", "--description", "for CI", "--role", "admin"]).unwrap();
        assert_eq!(args.expires, ExpirySpec::Never);
        assert_eq!(args.env, Environment::Test);
        assert_eq!(args.key.role, Role::Admin);
        assert_eq!(args.key.description.as_deref(), Some("for CI"));
    }

    #[test]
    fn create_takes_metadata_and_limits() {
        let args = create(&[
            "--meta",
            "team=billing",
            "--meta",
            "owner=a=b",
            "--meta",
            "team=growth",
            "--rate-limit",
            "2/h",
            "--limit",
            "exports=1/h",
            "--limit",
            "reports=5/min",
            "--credits",
            "500",
            "--refill",
            "5000/month@15",
        ])
        .unwrap();
        let metadata = args.key.metadata();
        assert_eq!(metadata["team"], "growth", "the last value wins");
        assert_eq!(metadata["owner"], "a=b", "only the first = splits");
        let limits = args.limits.limits();
        assert_eq!(limits.rate, RatePolicy::Custom(Rate { count: 2, period: Period::Hour }));
        assert_eq!(limits.named["exports"], rate("1/h"));
        assert_eq!(limits.named["reports"], rate("5/min"));
        assert_eq!(limits.credits, Some(500));
        assert_eq!(limits.refill, Some(Refill::Monthly { amount: 5000, day: 15 }));

        assert_eq!(create(&["--plan", "paid"]).unwrap().limits.limits().rate, RatePolicy::Plan("paid".into()));
        assert_eq!(create(&["--rate-limit", "none"]).unwrap().limits.limits().rate, RatePolicy::Unlimited);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert_eq!(kind(&["create", "--workspace", "ws", "--name", "ci"]), ErrorKind::MissingRequiredArgument);
        let bad = |extra: &[&str]| create(extra).expect_err("a usage error");
        assert_eq!(bad(&["--scope", "root"]).kind(), ErrorKind::ValueValidation);
        assert_eq!(bad(&["--expires", "7d"]).kind(), ErrorKind::ValueValidation);
        assert_eq!(bad(&["--env", "prod"]).kind(), ErrorKind::ValueValidation);
        assert_eq!(bad(&["--role", "root"]).kind(), ErrorKind::ValueValidation);
        for (flag, value, says) in [
            ("--rate-limit", "100/week", "bad rate"),
            ("--rate-limit", "0/min", "the count must be"),
            ("--limit", "exports", "expected NAME=N/PERIOD"),
            ("--limit", "exports=none", "bad rate"),
            ("--refill", "5/year", "bad refill"),
            ("--refill", "5/month@32", "bad refill"),
            ("--meta", "team", "expected KEY=VALUE"),
            ("--meta", "=x", "expected KEY=VALUE"),
            ("--meta", "team=", "has no value"),
        ] {
            let error = bad(&[flag, value]);
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{flag} {value}");
            assert!(error.to_string().contains(says), "{flag} {value}: {error}");
        }
        assert_eq!(kind(&["verify", "--scope", "read:Tables", "-"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["verify"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["verify", "--cost", "many", "-"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["audit", "--since", "yesterday"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["audit", "--limit", "0"]), ErrorKind::ValueValidation);
    }

    #[test]
    fn plan_and_rate_limit_conflict() {
        let error = create(&["--plan", "paid", "--rate-limit", "10/s"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(edit(&["--plan", "paid", "--rate-limit", "none"]).unwrap_err().kind(), ErrorKind::ArgumentConflict);
        let import = ["import", "--workspace", "ws", "--name", "old", "--scope", "read:all", "--plan", "free"];
        assert_eq!(kind(&[&import[..], &["--rate-limit", "1/s", "-"]].concat()), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn stats_prints_json_or_prometheus_not_both() {
        let Command::Stats(args) = parse(&["stats", "--prometheus"]).unwrap().command else { panic!("stats") };
        assert!(args.prometheus);
        assert!(parse(&["stats", "--json"]).unwrap().json);
        assert_eq!(kind(&["stats", "--json", "--prometheus"]), ErrorKind::ArgumentConflict);
        // clap checks the conflict only where --json is given after the subcommand; `run` refuses the other
        // spelling (see `cli::tests`).
        assert!(parse(&["--json", "stats", "--prometheus"]).is_ok());
    }

    #[test]
    fn verify_takes_a_token_or_stdin_and_never_shows_it() {
        let cli = parse(&["verify", "--scope", "write:tables", "--workspace", "ws", "-"]).unwrap();
        let Command::Verify(args) = cli.command else { panic!("verify") };
        assert!(matches!(args.token, TokenArg::Stdin));
        assert_eq!(args.scope.as_deref(), Some("write:tables"));
        assert_eq!(args.workspace.as_deref(), Some("ws"));
        assert_eq!((args.cost, args.limits.len()), (1, 0), "cost 1, no named limits by default");

        let cli = parse(&["verify", "kw_live_hunter2"]).unwrap();
        assert!(!format!("{cli:?}").contains("hunter2"));
        let Command::Verify(VerifyArgs { token: TokenArg::Given(token), .. }) = cli.command else {
            panic!("a given token")
        };
        assert_eq!(token.expose(), "kw_live_hunter2");
    }

    #[test]
    fn verify_takes_a_cost_and_named_limits() {
        let cli = parse(&["verify", "--cost", "0", "--limit", "exports", "--limit", "reports", "-"]).unwrap();
        let Command::Verify(args) = cli.command else { panic!("verify") };
        assert_eq!(args.cost, 0);
        assert_eq!(args.limits, ["exports", "reports"]);
    }

    #[test]
    fn sockets_come_from_the_flags() {
        let cli = parse(&["ping"]).unwrap();
        assert_eq!(cli.verify_socket(), PathBuf::from("/v.sock"));
        assert_eq!(cli.admin_socket(), PathBuf::from("/a.sock"));
        let cli = Cli::try_parse_from(["keyward", "ping", "--admin-socket", "/b.sock"]).unwrap();
        assert_eq!(cli.admin_socket(), PathBuf::from("/b.sock"));
    }

    #[test]
    fn key_commands_take_a_key_id() {
        let id = |command: Command| match command {
            Command::Show { key_id }
            | Command::Revoke { key_id }
            | Command::Deactivate { key_id }
            | Command::Activate { key_id } => key_id,
            other => panic!("{other:?}"),
        };
        for command in ["show", "revoke", "deactivate", "activate"] {
            assert_eq!(id(parse(&[command, "AbCdEf012345"]).unwrap().command), "AbCdEf012345");
            assert_eq!(kind(&[command]), ErrorKind::MissingRequiredArgument, "{command}");
        }
    }

    #[test]
    fn list_is_a_workspace_or_the_legacy_keys() {
        let list = |args: &[&str]| match parse(&[&["list"], args].concat()).map(|cli| cli.command) {
            Ok(Command::List(args)) => Ok(args),
            Ok(other) => panic!("{other:?}"),
            Err(error) => Err(error.kind()),
        };
        let legacy = list(&["--legacy"]).unwrap();
        assert!(legacy.legacy && legacy.workspace.is_none() && legacy.account.is_none());
        let of_account = list(&["--legacy", "--account", "acct-7"]).unwrap();
        assert_eq!(of_account.account.as_deref(), Some("acct-7"));
        assert_eq!(list(&[]).unwrap_err(), ErrorKind::MissingRequiredArgument);
        assert_eq!(list(&["--workspace", "ws", "--legacy"]).unwrap_err(), ErrorKind::ArgumentConflict);
        assert_eq!(list(&["--workspace", "ws", "--account", "acct-7"]).unwrap_err(), ErrorKind::ArgumentConflict);
        assert_eq!(list(&["--account", "acct-7"]).unwrap_err(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn edit_changes_only_what_is_given() {
        let changes = edit(&["--scope", "read:tables", "--scope", "write:forms"]).unwrap().changes();
        assert_eq!(
            changes,
            KeyChanges { scopes: Some(vec!["read:tables".into(), "write:forms".into()]), ..Default::default() }
        );
        let changes = edit(&[
            "--name",
            "renamed",
            "--description",
            "",
            "--role",
            "admin",
            "--expires",
            "never",
            "--meta",
            "team=",
            "--meta",
            "owner=ops",
            "--plan",
            "paid",
            "--limit",
            "exports=none",
            "--limit",
            "reports=3/d",
            "--refill",
            "none",
        ])
        .unwrap()
        .changes();
        assert_eq!(changes.name.as_deref(), Some("renamed"));
        assert_eq!(changes.description.as_deref(), Some(""), "an empty description clears it");
        assert_eq!(changes.scopes, None, "scopes left alone");
        assert_eq!(changes.role, Some(Role::Admin));
        assert_eq!(changes.expires, Some(ExpirySpec::Never));
        assert_eq!(changes.metadata, BTreeMap::from([("team".into(), "".into()), ("owner".into(), "ops".into())]));
        assert_eq!(changes.rate, Some(RatePolicy::Plan("paid".into())));
        assert_eq!(
            changes.named_limits,
            BTreeMap::from([("exports".into(), None), ("reports".into(), Some(rate("3/d")))])
        );
        assert_eq!(changes.refill, Some(None), "refill removed");
        assert_eq!(edit(&["--refill", "10/day"]).unwrap().changes().refill, Some(Some(Refill::Daily { amount: 10 })));
        assert_eq!(edit(&["--rate-limit", "none"]).unwrap().changes().rate, Some(RatePolicy::Unlimited));
    }

    #[test]
    fn edit_with_nothing_to_change_changes_nothing() {
        assert!(edit(&[]).unwrap().changes().is_empty(), "run refuses it before sending");
        assert!(!edit(&["--description", ""]).unwrap().changes().is_empty(), "clearing is a change");
        assert_eq!(edit(&["--refill", "sometimes"]).unwrap_err().kind(), ErrorKind::ValueValidation);
        assert_eq!(edit(&["--limit", "exports=often"]).unwrap_err().kind(), ErrorKind::ValueValidation);
        assert_eq!(kind(&["edit", "--name", "renamed"]), ErrorKind::MissingRequiredArgument, "no key id");
    }

    #[test]
    fn grace_is_a_count_and_a_unit() {
        let cases =
            [("0s", 0), ("30s", 30), ("15m", 900), ("1h", 3600), ("24h", 86_400), ("7d", 604_800), ("30d", 2_592_000)];
        for (text, seconds) in cases {
            assert_eq!(parse_grace(text), Ok(seconds), "{text}");
        }
        for bad in ["", "5", "s", "1.5h", "-1s", "1w", "1 h", "h1", "10mins", "99999999999999999999s"] {
            let error = parse_grace(bad).expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
        assert!(parse_grace(&format!("{}d", u64::MAX / 86_400 + 1)).unwrap_err().contains("too long"));

        let regenerate = |args: &[&str]| match parse(&[&["regenerate", "AbCdEf012345"], args].concat()) {
            Ok(Cli { command: Command::Regenerate(args), .. }) => Ok(args.grace),
            Ok(other) => panic!("{other:?}"),
            Err(error) => Err(error.kind()),
        };
        assert_eq!(regenerate(&[]), Ok(0), "no grace by default");
        assert_eq!(regenerate(&["--grace", "2s"]), Ok(2));
        assert_eq!(regenerate(&["--grace", "2"]), Err(ErrorKind::ValueValidation));
    }

    #[test]
    fn import_defaults_to_never_expiring_and_legacy_needs_an_account() {
        let base = ["import", "--workspace", "ws", "--name", "old key", "--scope", "read:all"];
        let import = |extra: &[&str]| match parse(&[&base[..], extra].concat()).map(|cli| cli.command) {
            Ok(Command::Import(args)) => Ok(args),
            Ok(other) => panic!("{other:?}"),
            Err(error) => Err(error.kind()),
        };
        let args = import(&["-"]).unwrap();
        assert_eq!(args.expires, ExpirySpec::Never);
        assert!(matches!(args.token, TokenArg::Stdin));
        assert!(!args.legacy && args.account.is_none());
        let args = import(&["--legacy", "--account", "acct-7", "--expires", "30d", "sk_prod_hunter2hunter2"]).unwrap();
        assert!(args.legacy);
        assert_eq!(args.account.as_deref(), Some("acct-7"));
        assert_eq!(args.expires, ExpirySpec::Days(30));
        let Ok(Cli { command: Command::Import(args), .. }) = parse(&[&base[..], &["sk_prod_hunter2hunter2"]].concat())
        else {
            panic!("import")
        };
        assert!(!format!("{args:?}").contains("hunter2"), "the token never shows in Debug");

        assert_eq!(import(&["--legacy", "-"]).unwrap_err(), ErrorKind::MissingRequiredArgument);
        assert_eq!(import(&["--account", "acct-7", "-"]).unwrap_err(), ErrorKind::MissingRequiredArgument);
        assert_eq!(import(&[]).unwrap_err(), ErrorKind::MissingRequiredArgument, "the token is required");
    }

    #[test]
    fn account_set_needs_workspaces() {
        let cli = parse(&["account", "set", "acct-7", "--workspace", "ws-a", "--workspace", "ws-b"]).unwrap();
        let Command::Account { command: AccountCommand::Set { account, workspaces } } = cli.command else {
            panic!("account set")
        };
        assert_eq!((account.as_str(), workspaces.as_slice()), ("acct-7", &["ws-a".to_string(), "ws-b".into()][..]));
        assert_eq!(kind(&["account", "set", "acct-7"]), ErrorKind::MissingRequiredArgument);
        let cli = parse(&["account", "show", "acct-7"]).unwrap();
        assert!(
            matches!(cli.command, Command::Account { command: AccountCommand::Show { account } } if account == "acct-7")
        );
    }

    #[test]
    fn fleet_has_init_and_status() {
        let fleet = |args: &[&str]| match parse(&[&["fleet"], args].concat()) {
            Ok(Cli { command: Command::Fleet { command }, .. }) => Ok(command),
            Ok(other) => panic!("{other:?}"),
            Err(error) => Err(error.kind()),
        };
        assert!(matches!(fleet(&["init"]), Ok(FleetCommand::Init)));
        assert!(matches!(fleet(&["status"]), Ok(FleetCommand::Status)));
        assert!(parse(&["fleet", "status", "--json"]).unwrap().json);
        assert_eq!(fleet(&[]).unwrap_err(), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
        assert_eq!(fleet(&["join"]).unwrap_err(), ErrorKind::InvalidSubcommand);
        assert_eq!(fleet(&["status", "web-1"]).unwrap_err(), ErrorKind::UnknownArgument);
    }

    #[test]
    fn credits_take_exactly_one_change() {
        let credits = |extra: &[&str]| match parse(&[&["credits", "AbCdEf012345"], extra].concat()) {
            Ok(Cli { command: Command::Credits(args), .. }) => Ok(args.change()),
            Ok(other) => panic!("{other:?}"),
            Err(error) => Err(error.kind()),
        };
        assert_eq!(credits(&["--set", "10"]), Ok(CreditChange::Set(10)));
        assert_eq!(credits(&["--add", "5"]), Ok(CreditChange::Add(5)));
        assert_eq!(credits(&[]), Err(ErrorKind::MissingRequiredArgument));
        assert_eq!(credits(&["--set", "1", "--add", "2"]), Err(ErrorKind::ArgumentConflict));
        assert_eq!(credits(&["--add", "-2"]), Err(ErrorKind::UnknownArgument));
    }

    #[test]
    fn usage_is_of_a_key_or_a_workspace() {
        let usage = |args: &[&str]| match parse(&[&["usage"], args].concat()) {
            Ok(Cli { command: Command::Usage(args), .. }) => Ok((args.key_id, args.workspace)),
            Ok(other) => panic!("{other:?}"),
            Err(error) => Err(error.kind()),
        };
        assert_eq!(usage(&["AbCdEf012345"]), Ok((Some("AbCdEf012345".into()), None)));
        assert_eq!(usage(&["--workspace", "ws"]), Ok((None, Some("ws".into()))));
        assert_eq!(usage(&[]), Err(ErrorKind::MissingRequiredArgument));
        assert_eq!(usage(&["AbCdEf012345", "--workspace", "ws"]), Err(ErrorKind::ArgumentConflict));
    }

    #[test]
    fn audit_filters() {
        let cli = parse(&[
            "audit",
            "--workspace",
            "ws",
            "--key",
            "AbCdEf012345",
            "--since",
            "2026-11-01T00:00:00Z",
            "--limit",
            "5",
        ])
        .unwrap();
        let Command::Audit(args) = cli.command else { panic!("audit") };
        assert_eq!(args.workspace.as_deref(), Some("ws"));
        assert_eq!(args.key_id.as_deref(), Some("AbCdEf012345"));
        assert_eq!(args.since, Some(1_793_491_200));
        assert_eq!(args.limit, Some(5));
    }
}
