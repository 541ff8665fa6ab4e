//! What the `keyward` command line accepts: the clap definitions, and the checks that make a bad scope or
//! expiry a usage error (exit status 2) before anything is sent. The daemon checks everything again.

use std::convert::Infallible;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use keyward_protocol::expiry::DEFAULT_EXPIRY;
use keyward_protocol::scope::{self, ScopeError};
use keyward_protocol::{paths, Environment, ExpirySpec, Role, Secret};

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
    /// List a workspace's keys, oldest first
    List {
        /// The workspace to list
        #[arg(long, value_name = "WS")]
        workspace: String,
    },
    /// Show one key
    Show {
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
    /// Check a token as an app server would (exit status 0 if valid, 1 if not)
    Verify(VerifyArgs),
    /// Check that both sockets answer
    Ping,
}

/// Arguments of `keyward create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
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

    /// When the key expires: never, 15d, 25d, 30d, 45d, 90d, 6m, 1y, or an RFC 3339 time such as
    /// 2027-01-31T00:00:00Z
    #[arg(long, value_name = "PRESET|RFC3339", default_value_t = DEFAULT_EXPIRY)]
    pub expires: ExpirySpec,

    /// The key's environment: live or test
    #[arg(long, value_name = "ENV", default_value_t = Environment::Live)]
    pub env: Environment,

    /// The key's role: admin or member [default: admin if a scope is `admin`, else member]
    #[arg(long, value_name = "ROLE")]
    pub role: Option<Role>,
}

impl CreateArgs {
    /// The role to ask for. Only an admin key may hold the `admin` scope, so asking for that scope
    /// implies the role unless `--role` says otherwise (and the daemon then refuses the combination).
    pub fn role(&self) -> Role {
        self.role.unwrap_or(if self.scopes.iter().any(|s| s == "admin") { Role::Admin } else { Role::Member })
    }
}

/// Arguments of `keyward verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Require the key to hold this scope (or one that implies it)
    #[arg(long, value_name = "SCOPE", value_parser = parse_scope)]
    pub scope: Option<String>,

    /// Require the key to belong to this workspace
    #[arg(long, value_name = "WS")]
    pub workspace: Option<String>,

    /// The token, or `-` to read it from stdin (which keeps it out of the process list and shell history)
    #[arg(value_name = "TOKEN", value_parser = parse_token)]
    pub token: TokenArg,
}

/// Where `verify` gets its token.
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["keyward", "--socket", "/v.sock", "--admin-socket", "/a.sock"], args].concat())
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
        assert!(matches!(after.command, Command::List { workspace } if workspace == "ws"));
        assert!(!parse(&["ping"]).unwrap().json);
    }

    #[test]
    fn create_has_defaults_and_repeatable_scopes() {
        let cli =
            parse(&["create", "--workspace", "ws", "--name", "ci", "--scope", "read:all", "--scope", "admin"]).unwrap();
        let Command::Create(args) = cli.command else { panic!("create") };
        assert_eq!(args.scopes, ["read:all", "admin"]);
        assert_eq!(args.role(), Role::Admin, "the admin scope implies the admin role");
        assert_eq!(args.expires, DEFAULT_EXPIRY);
        assert_eq!(args.env, Environment::Live);
        assert_eq!(args.description, None);

        let cli = parse(&[
            "create",
            "--workspace",
            "ws",
            "--name",
            "ci",
            "--scope",
            "read:all",
            "--expires",
            "never",
            "--env",
            "test",
            "--description",
            "for CI",
        ])
        .unwrap();
        let Command::Create(args) = cli.command else { panic!("create") };
        assert_eq!(args.expires, ExpirySpec::Never);
        assert_eq!(args.env, Environment::Test);
        assert_eq!(args.role(), Role::Member);
        assert_eq!(args.description.as_deref(), Some("for CI"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let no_scope = parse(&["create", "--workspace", "ws", "--name", "ci"]).unwrap_err();
        assert_eq!(no_scope.kind(), ErrorKind::MissingRequiredArgument);
        let bad_scope = parse(&["create", "--workspace", "ws", "--name", "ci", "--scope", "root"]).unwrap_err();
        assert_eq!(bad_scope.kind(), ErrorKind::ValueValidation);
        let bad_expiry =
            parse(&["create", "--workspace", "ws", "--name", "ci", "--scope", "admin", "--expires", "7d"]).unwrap_err();
        assert_eq!(bad_expiry.kind(), ErrorKind::ValueValidation);
        let bad_env =
            parse(&["create", "--workspace", "ws", "--name", "ci", "--scope", "admin", "--env", "prod"]).unwrap_err();
        assert_eq!(bad_env.kind(), ErrorKind::ValueValidation);
        let verify_scope = parse(&["verify", "--scope", "read:Tables", "-"]).unwrap_err();
        assert_eq!(verify_scope.kind(), ErrorKind::ValueValidation);
        assert_eq!(parse(&["verify"]).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn verify_takes_a_token_or_stdin_and_never_shows_it() {
        let cli = parse(&["verify", "--scope", "write:tables", "--workspace", "ws", "-"]).unwrap();
        let Command::Verify(args) = cli.command else { panic!("verify") };
        assert!(matches!(args.token, TokenArg::Stdin));
        assert_eq!(args.scope.as_deref(), Some("write:tables"));
        assert_eq!(args.workspace.as_deref(), Some("ws"));

        let cli = parse(&["verify", "kw_live_hunter2"]).unwrap();
        assert!(!format!("{cli:?}").contains("hunter2"));
        let Command::Verify(VerifyArgs { token: TokenArg::Given(token), .. }) = cli.command else {
            panic!("a given token")
        };
        assert_eq!(token.expose(), "kw_live_hunter2");
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
    fn show_and_revoke_take_a_key_id() {
        let cli = parse(&["show", "AbCdEf012345"]).unwrap();
        assert!(matches!(cli.command, Command::Show { key_id } if key_id == "AbCdEf012345"));
        let cli = parse(&["revoke", "AbCdEf012345"]).unwrap();
        assert!(matches!(cli.command, Command::Revoke { key_id } if key_id == "AbCdEf012345"));
    }
}
