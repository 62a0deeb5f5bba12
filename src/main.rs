//! The `protfam` command line: a thin shell around [`protfam::cli::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    match protfam::cli::run() {
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
