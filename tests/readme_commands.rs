//! Every `protfam` command in the README's `sh` blocks is one the binary accepts as
//! written: each is run through `sh` with `--help` appended, so clap parses every
//! flag and value before it (an unknown flag, a renamed one, an old spelling or a
//! bad value fails) without running the long job. `make` lines are left to CI (`make test`) and to
//! the quick start they describe.

use std::path::Path;

/// The README's `protfam ...` commands, continuation lines joined and comments cut.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        // A comment starts at `#` after whitespace (not `#SBATCH` lines, nor `${...}`).
        let code = match line.find(" #") {
            Some(i) => &line[..i],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        };
        let code = code.trim_end();
        if let Some(head) = code.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(code);
        let command = std::mem::take(&mut pending);
        if command.trim_start().starts_with("protfam ") {
            commands.push(command.trim().to_string());
        }
    }
    commands
}

#[test]
fn every_readme_command_parses() {
    let commands = readme_commands();
    assert!(commands.len() >= 10, "README commands found: {commands:#?}");
    let bin = assert_cmd::cargo::cargo_bin("protfam");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tmp = tempfile::tempdir().unwrap();
    for command in &commands {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{command} --help"))
            .env("PATH", &path)
            .env("SLURM_ARRAY_TASK_ID", "3")
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Usage: protfam"),
            "README command does not parse: {command}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("old spelling"),
            "README command uses an old spelling: {command}\n{stderr}"
        );
    }
}
