//! Finding and running the external baseline programs (HMMER, BLAST+).
//!
//! Programs are looked up in an explicit tool directory when one is given,
//! otherwise on `PATH`; a missing program is reported with the command that
//! installs it. Children never write into pipes we do not drain: their
//! stdout and stderr go to files, so a chatty tool cannot dead-lock us while
//! we feed its stdin.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::BaselineError;

/// The package that provides each program, for the install hint.
pub fn package_of(program: &str) -> &'static str {
    match program {
        "makeblastdb" | "blastp" => "ncbi-blast+",
        _ => "hmmer",
    }
}

/// How to install a package, for error messages.
pub fn install_hint(package: &str) -> String {
    let conda = if package == "ncbi-blast+" { "blast" } else { package };
    format!(
        "install it with `sudo apt-get install -y {package}` (Debian/Ubuntu) or `conda install -c bioconda {conda}`"
    )
}

/// Writes a child's standard input.
pub type StdinFeeder<'a> = &'a mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>;

/// An external program resolved to a path.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: &'static str,
    pub path: PathBuf,
}

impl Tool {
    /// Finds `name` in `tool_dir` if given, else on `PATH`.
    pub fn find(name: &'static str, tool_dir: Option<&Path>) -> Result<Tool, BaselineError> {
        let candidates: Vec<PathBuf> = match tool_dir {
            Some(dir) => vec![dir.to_path_buf()],
            None => std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        };
        for dir in &candidates {
            let path = dir.join(name);
            if is_executable(&path) {
                return Ok(Tool { name, path });
            }
        }
        let searched = match tool_dir {
            Some(dir) => dir.display().to_string(),
            None => "PATH".to_string(),
        };
        Err(BaselineError::MissingTool {
            tool: name.to_string(),
            searched,
            hint: install_hint(package_of(name)),
        })
    }

    /// The first line that names a version (`# HMMER 3.3.2 ...`, `blastp: 2.12.0+`), for cache manifests and logs.
    pub fn version(&self) -> String {
        let flag = if self.name.starts_with("hmm") { "-h" } else { "-version" };
        let output = Command::new(&self.path).arg(flag).stdin(Stdio::null()).output();
        let Ok(output) = output else {
            return "unknown".to_string();
        };
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        text.lines()
            .find(|l| l.contains("HMMER 3") || l.contains(": 2.") || l.contains("blast"))
            .map(|l| l.trim_start_matches('#').trim().to_string())
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// Runs the program with `args`, feeding `stdin` (if any) and sending its
    /// stdout to `stdout_to` (or discarding it); stderr is captured into
    /// `log` and quoted in the error when the program fails.
    pub fn run<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        stdin: Option<StdinFeeder<'_>>,
        stdout_to: Option<&Path>,
        log: &Path,
    ) -> Result<(), BaselineError> {
        let command_line = format!(
            "{} {}",
            self.path.display(),
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let stderr = File::create(log).map_err(|e| super::io_error(log, e))?;
        let stdout = match stdout_to {
            Some(path) => Stdio::from(File::create(path).map_err(|e| super::io_error(path, e))?),
            None => Stdio::null(),
        };
        let mut child = Command::new(&self.path)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(stdout)
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| BaselineError::ToolFailed {
                tool: self.name.to_string(),
                command: command_line.clone(),
                message: format!("cannot start: {e}"),
            })?;
        let mut feed_error = None;
        if let Some(feed) = stdin {
            let mut pipe = std::io::BufWriter::new(child.stdin.take().expect("stdin was piped"));
            // A tool that exits early closes its stdin; its exit status and stderr explain why better than EPIPE.
            if let Err(e) = feed(&mut pipe).and_then(|_| pipe.flush()) {
                feed_error = Some(e);
            }
        }
        let status = child.wait().map_err(|e| BaselineError::ToolFailed {
            tool: self.name.to_string(),
            command: command_line.clone(),
            message: format!("cannot wait for it: {e}"),
        })?;
        if !status.success() || feed_error.is_some() {
            let stderr = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let mut message = format!("{status}");
            if let Some(e) = feed_error {
                message.push_str(&format!("; writing its input failed: {e}"));
            }
            if !tail.is_empty() {
                message.push_str(&format!("; stderr:\n{}", tail.join("\n")));
            }
            return Err(BaselineError::ToolFailed {
                tool: self.name.to_string(),
                command: command_line,
                message,
            });
        }
        Ok(())
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_the_package_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let err = Tool::find("hmmbuild", Some(empty.path())).unwrap_err().to_string();
        assert!(err.contains("hmmbuild"), "{err}");
        assert!(err.contains("apt-get install -y hmmer"), "{err}");
        let err = Tool::find("blastp", Some(empty.path())).unwrap_err().to_string();
        assert!(err.contains("apt-get install -y ncbi-blast+"), "{err}");
    }

    #[test]
    fn failing_tool_reports_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let sh = Tool {
            name: "sh",
            path: PathBuf::from("/bin/sh"),
        };
        let log = dir.path().join("log");
        let err = sh
            .run(&["-c", "echo broken alignment >&2; exit 3"], None, None, &log)
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken alignment"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }

    #[test]
    fn feeds_stdin_and_captures_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Tool {
            name: "cat",
            path: PathBuf::from("/bin/cat"),
        };
        let out = dir.path().join("out");
        let mut feed = |w: &mut dyn Write| w.write_all(b"hello\n");
        cat.run::<&str>(&[], Some(&mut feed), Some(&out), &dir.path().join("log"))
            .unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "hello\n");
    }
}
