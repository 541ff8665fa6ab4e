//! The `keyward` command-line tool: create, list, show, revoke and verify keys through `keywardd`.
//!
//! This module owns what each command does and what exit status it ends with; the argument definitions
//! live in `args` and everything printed to stdout in `output`. The binary is one line: [`main`].
//!
//! Exit status: 0 on success (for `verify`, a valid token); 1 when `verify` got an answer other than
//! `VALID`; 2 for a usage error, an unreachable daemon, or a refused request, with one line
//! `keyward: <reason>` on stderr.
//!
//! `verify` talks to the verify socket; every other command to the admin socket (`ping` to both). Each
//! command makes one [`BlockingClient`] connection: a CLI run needs no runtime.

mod args;
mod output;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use clap::Parser;
use keyward_protocol::{CreateRequest, Limits, Secret, VerifyRequest};

pub use args::{Cli, Command, CreateArgs, TokenArg, VerifyArgs};
use output::Format;

use crate::{BlockingClient, ClientError};

/// Exit status of a verify whose answer is not `VALID`.
const EXIT_NOT_VALID: u8 = 1;
/// Exit status of a failure: usage, unreachable daemon, refused request (clap uses 2 for usage too).
const EXIT_FAILURE: u8 = 2;
/// A token is at most 512 characters (an imported one); reading stops well past that, whatever is piped in.
const MAX_STDIN_TOKEN: u64 = 4096;

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
    /// `verify -` could not read the token.
    #[error("cannot read the token from stdin: {0}")]
    Stdin(io::Error),
    /// Stdout could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

/// The whole program: parses the command line, runs the command, reports a failure on stderr, and
/// returns the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = io::stdout().lock();
    match run(cli, &mut stdout) {
        Ok(outcome) => outcome.into(),
        // The reader went away (`keyward list | head`): what it wanted has been printed.
        Err(CliError::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keyward: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs one parsed command, printing its result to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let format = if cli.json { Format::Json } else { Format::Text };
    let outcome = match &cli.command {
        Command::Create(args) => create(&cli, args, format, out)?,
        Command::List { workspace } => {
            let keys = admin(&cli)?.list(workspace)?;
            output::keys(out, format, workspace, &keys)?;
            Outcome::Success
        }
        Command::Show { key_id } => {
            let key = admin(&cli)?.get(key_id)?;
            output::key(out, format, &key)?;
            Outcome::Success
        }
        Command::Revoke { key_id } => {
            let key = admin(&cli)?.revoke(key_id)?;
            output::revoked(out, format, &key)?;
            Outcome::Success
        }
        Command::Verify(args) => verify(&cli, args, format, out)?,
        Command::Ping => {
            let (verify_socket, admin_socket) = (cli.verify_socket(), cli.admin_socket());
            BlockingClient::connect(&verify_socket)?.ping()?;
            BlockingClient::connect(&admin_socket)?.ping()?;
            output::pinged(out, format, &verify_socket, &admin_socket)?;
            Outcome::Success
        }
    };
    out.flush()?;
    Ok(outcome)
}

fn admin(cli: &Cli) -> Result<BlockingClient, ClientError> {
    BlockingClient::connect(cli.admin_socket())
}

fn create(cli: &Cli, args: &CreateArgs, format: Format, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let request = CreateRequest {
        workspace: args.workspace.clone(),
        name: args.name.clone(),
        description: args.description.clone(),
        scopes: args.scopes.clone(),
        expires: args.expires,
        env: args.env,
        role: args.role(),
        metadata: BTreeMap::new(),
        limits: Limits::default(),
    };
    let created = admin(cli)?.create(request)?;
    output::created(out, format, &created)?;
    Ok(Outcome::Success)
}

fn verify(cli: &Cli, args: &VerifyArgs, format: Format, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let token = match &args.token {
        TokenArg::Given(token) => token.clone(),
        TokenArg::Stdin => read_token(io::stdin().lock()).map_err(CliError::Stdin)?,
    };
    let request =
        VerifyRequest { scope: args.scope.clone(), workspace: args.workspace.clone(), ..VerifyRequest::new(token) };
    let answer = BlockingClient::connect(cli.verify_socket())?.verify(request)?;
    output::verified(out, format, &answer)?;
    Ok(if answer.code.is_valid() { Outcome::Success } else { Outcome::NotValid })
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
