//! The `keyward` command-line tool: create, list, show, edit, regenerate, deactivate, activate, revoke,
//! import and verify keys; read the audit log, legacy accounts, credits, usage and the daemon's counters;
//! set up and check fleet mode, through `keywardd`.
//!
//! This module owns what each command does and what exit status it ends with; the argument definitions
//! live in `args`, everything printed to stdout in `output` (one file per family of answers there, the
//! Prometheus exposition of `stats --prometheus` included). The binary is one line: [`main`].
//!
//! The whole tool sits behind the `cli` feature (on by default), so that an app server linking this crate
//! without it builds none of what only the tool needs (clap, and serde_json and jiff for its output).
//!
//! Exit status: 0 on success (for `verify`, a valid token); 1 when `verify` got an answer other than
//! `VALID` (including `RATE_LIMITED`, `USAGE_EXCEEDED`, `INACTIVE` and `LEGACY_SUNSET`); 2 for a usage
//! error, an unreachable daemon, or a refused request, with one line `keyward: <reason>` on stderr. A
//! `fleet status` whose engine cannot be reached still answers (exit status 0, the report says why); a
//! change refused with `ENGINE_UNAVAILABLE` or `ENGINE_DIVERGED` is a refused request, and its line says
//! what that means for this host.
//!
//! `verify` talks to the verify socket; every other command to the admin socket (`ping` to both). Each
//! command makes one [`BlockingClient`] connection: a CLI run needs no runtime. With `--actor`, every
//! request on the admin socket is sent on behalf of that label, which the audit log records.

mod args;
mod output;

use std::io::{self, Read, Write};
use std::process::ExitCode;

use clap::Parser;
use keyward_protocol::token::IMPORTED_LEN;
use keyward_protocol::{AccountView, AuditQuery, CreateRequest, ErrorCode, ImportRequest, Secret, VerifyRequest};

pub use args::{
    AccountCommand, AuditArgs, Cli, Command, CreateArgs, CreditsArgs, EditArgs, FleetCommand, ImportArgs, KeyArgs,
    LimitArgs, ListArgs, RefillChange, RegenerateArgs, StatsArgs, TokenArg, UsageArgs, VerifyArgs,
};
use output::Format;

use crate::blocking::BlockingClient;
use crate::error::ClientError;
use crate::requests::DEFAULT_REQUEST_TIMEOUT;

/// Exit status of a verify whose answer is not `VALID`.
const EXIT_NOT_VALID: u8 = 1;
/// Exit status of a failure: usage, unreachable daemon, refused request (clap uses 2 for usage too).
const EXIT_FAILURE: u8 = 2;
/// The answer to an `edit` without a setting.
const NOTHING_TO_EDIT: &str = "nothing to change: give at least one of --name, --description, --scope, --role, \
                               --expires, --meta, --plan, --rate-limit, --limit, --refill";
/// The answer to `--json stats --prometheus`, which clap lets through (it checks a global flag's conflicts
/// only after the subcommand).
const JSON_OR_PROMETHEUS: &str = "--json and --prometheus cannot be used together: choose one output format";
/// What `ENGINE_UNAVAILABLE` means for this host, after the daemon's message.
const ENGINE_UNAVAILABLE_HINT: &str = "the fleet engine (PostgreSQL) is unreachable or too slow: changes cannot be \
                                       made until it answers; verifies go on from this host's replica (see \
                                       `keyward fleet status`)";
/// What `ENGINE_DIVERGED` means for this host, after the daemon's message.
const ENGINE_DIVERGED_HINT: &str = "this host holds changes the fleet engine does not (an engine restored from an \
                                    older backup, or another database) and refuses to follow it: changes fail, \
                                    verifies go on from its replica (see `keyward fleet status`)";
/// A token is at most as long as the longest importable one (`IMPORTED_LEN`'s end); reading stops well past
/// that, at eight times as much, whatever is piped in.
const MAX_STDIN_TOKEN: u64 = 8 * *IMPORTED_LEN.end() as u64;

/// How a command ended, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done (for `verify`: the token is valid).
    Success,
    /// `verify` got an answer, and it is not `VALID`.
    NotValid,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        match outcome {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::NotValid => ExitCode::from(EXIT_NOT_VALID),
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The daemon could not be reached, or refused the request.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `verify -` or `import -` could not read the token.
    #[error("cannot read the token from stdin: {0}")]
    Stdin(io::Error),
    /// Stdout could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    /// The arguments parse but ask for nothing (an `edit` without a setting).
    #[error("{0}")]
    Usage(&'static str),
}

/// The whole program: parses the command line, runs the command, reports a failure on stderr, and
/// returns the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = if cli.json { Format::Json } else { Format::Text };
    let mut stdout = io::stdout().lock();
    match run(cli, &mut stdout) {
        Ok(outcome) => outcome.into(),
        // The reader went away (`keyward list | head`): what it wanted has been printed.
        Err(CliError::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keyward: {}", error.line());
            if format == Format::Json {
                // A script reading stdout gets one JSON value whatever happened; nothing more can be done
                // about stdout failing here.
                let _ = output::failed(&mut stdout, error.code(), &error.message());
            }
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

impl CliError {
    /// The stable code of a failure, for `--json`: the daemon's error code, or what went wrong on this side.
    pub fn code(&self) -> &'static str {
        match self {
            CliError::Client(error) => error.code_name(),
            CliError::Stdin(_) => "STDIN",
            CliError::Output(_) => "OUTPUT",
            CliError::Usage(_) => "USAGE",
        }
    }

    /// What went wrong, without the code [`CliError::code`] gives.
    pub fn message(&self) -> String {
        match self {
            CliError::Client(ClientError::Refused(reply) | ClientError::Rejected(reply)) => reply.message.clone(),
            other => other.to_string(),
        }
    }

    /// The one line printed on stderr after `keyward: `: the error, and for a code whose consequence its
    /// message does not spell out (a fleet engine that is down or diverged), what that means for this host.
    pub fn line(&self) -> String {
        match self.hint() {
            Some(hint) => format!("{self}; {hint}"),
            None => self.to_string(),
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            CliError::Client(error) => match error.code()? {
                ErrorCode::EngineUnavailable => Some(ENGINE_UNAVAILABLE_HINT),
                ErrorCode::EngineDiverged => Some(ENGINE_DIVERGED_HINT),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Runs one parsed command, printing its result to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let format = if cli.json { Format::Json } else { Format::Text };
    match &cli.command {
        Command::Create(args) => {
            let created = admin(&cli)?.create(create_request(args))?;
            output::keys::created(out, format, &created)?;
        }
        Command::List(ListArgs { workspace: Some(workspace), .. }) => {
            let keys = admin(&cli)?.list(workspace)?;
            output::keys::keys(out, format, workspace, &keys)?;
        }
        Command::List(ListArgs { workspace: None, account, .. }) => {
            let keys = admin(&cli)?.list_legacy(account.as_deref())?;
            output::keys::legacy_keys(out, format, account.as_deref(), &keys)?;
        }
        Command::Show { key_id } => {
            let key = admin(&cli)?.get(key_id)?;
            output::keys::key(out, format, &key)?;
        }
        Command::Edit(args) => {
            let changes = args.changes();
            if changes.is_empty() {
                return Err(CliError::Usage(NOTHING_TO_EDIT));
            }
            let key = admin(&cli)?.edit(&args.key_id, changes)?;
            output::keys::edited(out, format, &key)?;
        }
        Command::Regenerate(args) => {
            let created = admin(&cli)?.regenerate(&args.key_id, args.grace)?;
            output::keys::regenerated(out, format, &created)?;
        }
        Command::Deactivate { key_id } => {
            let key = admin(&cli)?.deactivate(key_id)?;
            output::keys::deactivated(out, format, &key)?;
        }
        Command::Activate { key_id } => {
            let key = admin(&cli)?.activate(key_id)?;
            output::keys::activated(out, format, &key)?;
        }
        Command::Revoke { key_id } => {
            let key = admin(&cli)?.revoke(key_id)?;
            output::keys::revoked(out, format, &key)?;
        }
        Command::Import(args) => {
            let request = import_request(args, token(&args.token)?);
            let key = admin(&cli)?.import(request)?;
            output::keys::imported(out, format, &key)?;
        }
        Command::Verify(args) => return verify(&cli, args, format, out),
        Command::Audit(args) => {
            let query = AuditQuery {
                workspace: args.workspace.clone(),
                key: args.key_id.clone(),
                since: args.since,
                limit: args.limit.unwrap_or(0),
            };
            let entries = admin(&cli)?.audit(query)?;
            output::audit::audit(out, format, &entries)?;
        }
        Command::Account { command: AccountCommand::Set { account, workspaces } } => {
            let request = AccountView { account: account.clone(), workspaces: workspaces.clone() };
            let account = admin(&cli)?.set_account(request)?;
            output::keys::account(out, format, &account)?;
        }
        Command::Account { command: AccountCommand::Show { account } } => {
            let account = admin(&cli)?.get_account(account)?;
            output::keys::account(out, format, &account)?;
        }
        Command::Credits(args) => {
            let key = admin(&cli)?.credits(&args.key_id, args.change())?;
            output::keys::credited(out, format, &key)?;
        }
        Command::Usage(UsageArgs { key_id: Some(key_id), .. }) => {
            let report = admin(&cli)?.usage(key_id)?;
            output::usage::usage(out, format, &report)?;
        }
        Command::Usage(UsageArgs { key_id: None, workspace: Some(workspace) }) => {
            let keys = admin(&cli)?.workspace_usage(workspace)?;
            output::usage::workspace_usage(out, format, workspace, &keys)?;
        }
        Command::Usage(UsageArgs { key_id: None, workspace: None }) => {
            unreachable!("clap requires a key id or --workspace")
        }
        Command::Stats(StatsArgs { prometheus }) => {
            if *prometheus && cli.json {
                return Err(CliError::Usage(JSON_OR_PROMETHEUS));
            }
            let report = admin(&cli)?.stats()?;
            if *prometheus {
                out.write_all(output::prometheus::exposition(&report).as_bytes())?;
            } else {
                output::stats::stats(out, format, &report)?;
            }
        }
        Command::Fleet { command: FleetCommand::Init } => {
            let report = admin(&cli)?.fleet_init()?;
            output::fleet::initialized(out, format, &report)?;
        }
        Command::Fleet { command: FleetCommand::Status } => {
            // An engine that cannot be reached is an answer too: the report says so, and why.
            let report = admin(&cli)?.fleet_status()?;
            output::fleet::status(out, format, &report)?;
        }
        Command::Ping => {
            let (verify_socket, admin_socket) = (cli.verify_socket(), cli.admin_socket());
            connect(&cli, &verify_socket)?.ping()?;
            connect(&cli, &admin_socket)?.ping()?;
            output::pinged(out, format, &verify_socket, &admin_socket)?;
        }
    }
    out.flush()?;
    Ok(Outcome::Success)
}

/// A connection to the admin socket that sends every request on behalf of `--actor`, if given.
fn admin(cli: &Cli) -> Result<BlockingClient, ClientError> {
    let mut client = connect(cli, &cli.admin_socket())?;
    client.set_actor(cli.actor.clone());
    Ok(client)
}

/// A connection to `socket`, if its listener runs as a user the CLI trusts (`--daemon-user`).
fn connect(cli: &Cli, socket: &std::path::Path) -> Result<BlockingClient, ClientError> {
    BlockingClient::connect_trusting(socket, DEFAULT_REQUEST_TIMEOUT, cli.daemon_user.unwrap_or_default())
}

fn create_request(args: &CreateArgs) -> CreateRequest {
    CreateRequest {
        workspace: args.key.workspace.clone(),
        name: args.key.name.clone(),
        description: args.key.description.clone(),
        scopes: args.key.scopes.clone(),
        expires: args.expires,
        env: args.env,
        role: args.key.role,
        metadata: args.key.metadata(),
        limits: args.limits.limits(),
    }
}

fn import_request(args: &ImportArgs, token: Secret) -> ImportRequest {
    ImportRequest {
        token,
        workspace: args.key.workspace.clone(),
        name: args.key.name.clone(),
        description: args.key.description.clone(),
        scopes: args.key.scopes.clone(),
        role: args.key.role,
        expires: args.expires,
        metadata: args.key.metadata(),
        limits: args.limits.limits(),
        // clap makes --legacy and --account come together.
        legacy_account: args.account.clone().filter(|_| args.legacy),
    }
}

fn verify(cli: &Cli, args: &VerifyArgs, format: Format, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let request = VerifyRequest {
        scope: args.scope.clone(),
        workspace: args.workspace.clone(),
        cost: args.cost,
        limits: args.limits.clone(),
        ..VerifyRequest::new(token(&args.token)?)
    };
    let answer = connect(cli, &cli.verify_socket())?.verify(request)?;
    output::verify::verified(out, format, &answer)?;
    out.flush()?;
    Ok(if answer.code.is_valid() { Outcome::Success } else { Outcome::NotValid })
}

/// The token given on the command line, or read from stdin for `-`.
fn token(arg: &TokenArg) -> Result<Secret, CliError> {
    match arg {
        TokenArg::Given(token) => Ok(token.clone()),
        TokenArg::Stdin => read_token(io::stdin().lock()).map_err(CliError::Stdin),
    }
}

/// Reads a token from `input`, without the surrounding whitespace (`echo` and here-strings add a newline).
fn read_token(input: impl Read) -> io::Result<Secret> {
    // The buffer itself becomes the Secret (trimmed in place, no copy), so the token is wiped when it is
    // dropped; room for a whole token up front avoids leaving copies behind in regrown buffers.
    let mut text = String::with_capacity(256);
    input.take(MAX_STDIN_TOKEN).read_to_string(&mut text)?;
    let end = text.trim_end().len();
    text.truncate(end);
    let start = text.len() - text.trim_start().len();
    text.drain(..start);
    Ok(Secret::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_token_is_trimmed() {
        let token = read_token(&b"  kw_live_abc \r\n"[..]).unwrap();
        assert_eq!(token.expose(), "kw_live_abc");
        assert!(read_token(&b"\n"[..]).unwrap().is_empty());
    }

    #[test]
    fn outcomes_map_to_exit_statuses() {
        assert_eq!(ExitCode::from(Outcome::Success), ExitCode::SUCCESS);
        assert_eq!(ExitCode::from(Outcome::NotValid), ExitCode::from(1));
    }

    #[test]
    fn an_edit_without_a_setting_is_refused_before_connecting() {
        let cli =
            Cli::try_parse_from(["keyward", "--admin-socket", "/nonexistent.sock", "edit", "AbCdEf012345"]).unwrap();
        let error = run(cli, &mut Vec::new()).unwrap_err();
        assert!(matches!(error, CliError::Usage(_)), "{error:?}");
        assert!(error.to_string().starts_with("nothing to change: give at least one of --name"), "{error}");
    }

    #[test]
    fn json_and_prometheus_are_refused_before_connecting() {
        let cli =
            Cli::try_parse_from(["keyward", "--admin-socket", "/nonexistent.sock", "--json", "stats", "--prometheus"])
                .unwrap();
        let error = run(cli, &mut Vec::new()).unwrap_err();
        assert!(matches!(error, CliError::Usage(JSON_OR_PROMETHEUS)), "{error:?}");
    }

    #[test]
    fn engine_refusals_keep_their_code_and_say_what_they_mean() {
        use keyward_protocol::ErrorReply;
        let refused = |code, message| CliError::Client(ClientError::Refused(ErrorReply::new(code, message)));
        let error = refused(ErrorCode::EngineUnavailable, "the engine did not answer within 5 s");
        assert_eq!(error.code(), "ENGINE_UNAVAILABLE");
        assert_eq!(error.message(), "the engine did not answer within 5 s", "--json keeps the daemon's message");
        let line = error.line();
        assert!(
            line.starts_with("ENGINE_UNAVAILABLE: the engine did not answer within 5 s; the fleet engine"),
            "{line}"
        );
        assert!(line.contains("verifies go on") && !line.contains('\n'), "{line}");

        let error = refused(ErrorCode::EngineDiverged, "the engine's newest change is #40, this host has #44");
        assert_eq!(error.code(), "ENGINE_DIVERGED");
        let line = error.line();
        assert!(line.starts_with("ENGINE_DIVERGED: the engine's newest change is #40"), "{line}");
        assert!(line.contains("refuses to follow it") && !line.contains('\n'), "{line}");

        let error = refused(ErrorCode::KeyNotFound, "no key AbCdEf012345");
        assert_eq!(error.line(), "KEY_NOT_FOUND: no key AbCdEf012345", "other codes are left as they are");
        assert_eq!(CliError::Usage(NOTHING_TO_EDIT).line(), NOTHING_TO_EDIT);
    }

    #[test]
    fn fleet_commands_go_to_the_admin_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        for command in ["init", "status"] {
            let cli = Cli::try_parse_from([
                "keyward",
                "--socket",
                "/nonexistent-verify.sock",
                "--admin-socket",
                socket.to_str().unwrap(),
                "fleet",
                command,
            ])
            .unwrap();
            let error = run(cli, &mut Vec::new()).unwrap_err();
            assert!(error.to_string().contains(socket.to_str().unwrap()), "{command}: {error}");
        }
    }

    #[test]
    fn an_unreachable_daemon_is_one_line_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let cli = Cli::try_parse_from(["keyward", "--admin-socket", socket.to_str().unwrap(), "show", "AbCdEf012345"])
            .unwrap();
        let error = run(cli, &mut Vec::new()).unwrap_err();
        let shown = error.to_string();
        assert!(shown.contains(socket.to_str().unwrap()), "{shown}");
        assert!(!shown.contains('\n'), "{shown}");
    }
}
