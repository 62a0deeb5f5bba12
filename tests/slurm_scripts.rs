//! Every sbatch script in `contrib/slurm/` hands `protfam` only flags and values
//! it accepts, so a renamed flag breaks this test and not a user's cluster job.
//! Each script runs under plain `bash` (no Slurm) with its settings in the
//! environment and `PROTFAM` pointing at a wrapper that appends `--help`: clap
//! parses every flag and value before it, then prints the usage without
//! running the job. `make slurm-test` runs the same scripts under a real Slurm.

use std::path::Path;

#[test]
fn every_sbatch_script_runs_a_protfam_command_that_parses() {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/slurm");
    let mut scripts: Vec<_> = std::fs::read_dir(&contrib)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sbatch"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 10, "sbatch scripts found: {scripts:#?}");
    let tmp = tempfile::tempdir().unwrap();
    let wrapper = tmp.path().join("protfam-help");
    std::fs::write(&wrapper, "#!/bin/sh\nexec \"$PROTFAM_BIN\" \"$@\" --help\n").unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let work = tmp.path().join("work");
    // cache_merge.sbatch checks that every task's cache directory is there.
    for k in 0..4 {
        std::fs::create_dir_all(work.join(format!("cache-{k}"))).unwrap();
    }
    for script in &scripts {
        let out = std::process::Command::new("bash")
            .arg(script)
            .current_dir(tmp.path())
            .env("PROTFAM", &wrapper)
            .env("PROTFAM_BIN", assert_cmd::cargo::cargo_bin("protfam"))
            .env("SLURM_ARRAY_TASK_ID", "3")
            .env("SHARDS", "4")
            .env("WORK", &work)
            .env("CACHE", tmp.path().join("cache"))
            .env("DATA", tmp.path().join("data"))
            .env("STORE", tmp.path().join("residue"))
            .env("HITS", tmp.path().join("hits"))
            .env("CLASSIFIER", tmp.path().join("classifier"))
            .env("INPUT", tmp.path().join("proteome.fa"))
            .env("PART_DIR", tmp.path().join("parts"))
            .env("OUTPUT", tmp.path().join("annotations.tsv"))
            .env("SEARCH_ARGS", "--residue-index exact")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("Usage: protfam"),
            "{} does not run a protfam command that parses:\n{stdout}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("old spelling"),
            "{} uses an old spelling:\n{stderr}",
            script.display()
        );
    }
}
