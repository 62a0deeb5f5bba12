//! The `protfam` command line: parses flags into validated library options and
//! runs one subcommand. The library (`protfam::…`) knows nothing of this module.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", report(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes joined by `: `, each cause once: library errors
/// print their source in their own message, so anyhow's `{:#}` would repeat it.
fn report(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let line = cause.to_string();
        if text.contains(&line) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&line);
    }
    text
}
