//! The `protfam` command line: parses flags into validated library options and
//! runs one subcommand. The library (`protfam::…`) knows nothing of this module.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
