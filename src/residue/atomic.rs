//! Crash-safe file writes for the residue store: write a temporary file in the
//! target's directory, `fsync` it, `rename` it over the target, `fsync` the
//! directory. A reader sees the old file, the new file or nothing, never a
//! partial file, whenever the writer is killed.
//!
//! Temporary names start with [`TEMP_PREFIX`] and carry the writer's pid, so
//! [`remove_stale_temp_files`] can delete what dead writers left behind.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Prefix of every temporary file; readers skip names that start with it.
pub const TEMP_PREFIX: &str = ".tmp-";

fn temp_path_for(target: &Path) -> PathBuf {
    use rand::Rng;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let random: u32 = rand::thread_rng().gen();
    target.with_file_name(format!("{TEMP_PREFIX}{}-{random:08x}-{name}", std::process::id()))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some file systems refuse fsync on directories; that weakens durability, not atomicity.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput || e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// Writes `target` atomically from `write`; on error the temporary file is removed and `target` untouched.
pub fn write_atomic<F>(target: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = temp_path_for(target);
    let result = (|| {
        let file = File::options().write(true).create_new(true).open(&temp)?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        write(&mut writer)?;
        writer.flush()?;
        writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temp, target)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Deletes temporary files in `dir` whose writer process (by pid) no longer runs.
pub fn remove_stale_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let pid: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0 || p == std::process::id() as i32);
        if !alive {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically_and_cleans_up_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.json");
        write_atomic(&target, |w| w.write_all(b"one")).unwrap();
        let failed = write_atomic(&target, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file removed"
        );
        // A temp file of a dead process (pid 0x7fffffff cannot exist) is stale.
        std::fs::write(dir.path().join(format!("{TEMP_PREFIX}2147483646-0-x")), b"junk").unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()).unwrap(), 1);
    }
}
