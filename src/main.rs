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
        // "checking a.fa" + "a.fa: no record" reads "checking a.fa: no record".
        let overlap = text
            .match_indices(' ')
            .map(|(i, _)| &text[i + 1..])
            .chain(std::iter::once(text.as_str()))
            .find(|tail| !tail.is_empty() && line.starts_with(&format!("{tail}: ")))
            .map(str::len);
        match overlap {
            Some(n) => text.push_str(&line[n..]),
            None => {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&line);
            }
        }
    }
    text
}
