//! `keyward`: the keyward command-line tool. Everything lives in [`keyward_client::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    keyward_client::cli::main()
}
