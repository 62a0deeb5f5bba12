//! The `protfam` command line: a thin shell around [`protfam::cli::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    match protfam::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
