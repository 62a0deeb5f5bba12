//! Crash-safe file replacement: write to a temporary file in the target's
//! directory, `fsync` it, `rename` it over the target, `fsync` the directory.
//!
//! A reader therefore sees either the old file, the new file or (for a new
//! name) nothing, never a partial file, whatever moment the writer is killed
//! at (kill -9, power loss after the directory sync). Temporary files are
//! named `.tmp-<host>-<pid>-<random>-<final name>`; [`remove_stale_temp_files`]
//! deletes the ones left by dead processes of this host, so concurrent writers
//! (other processes, other hosts on a shared file system) are never disturbed.
//!
//! This is the one way protfam writes an output file: the embedding cache,
//! the per-residue store, trained classifiers, reports, predictions, plots and
//! annotation output all go through [`write_atomic`] (a writer),
//! [`write_bytes_atomic`] (bytes in memory) or [`write_atomic_via_path`] (a
//! library that insists on writing a path itself), and whole directories are
//! moved into place with [`rename_durable`]. A full disk therefore fails the
//! write with an error naming the target, and leaves the previous file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Prefix of every temporary file; readers skip names that start with it.
pub const TEMP_PREFIX: &str = ".tmp-";

/// This machine's host name, sanitised for use in file names (`localhost` if unknown).
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .take(40)
        .collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}

/// A name no other writer (process, host, earlier call) will pick: `<host>-<pid>-<random hex>`.
pub fn unique_tag() -> String {
    use rand::Rng;
    let random: u64 = rand::thread_rng().gen();
    format!("{}-{}-{random:016x}", host_name(), std::process::id())
}

/// The temporary path [`write_atomic`] writes before renaming onto `target`.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!("{TEMP_PREFIX}{}-{name}", unique_tag()))
}

/// `fsync` a directory so that a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    // Opening a directory read-only and calling fsync is the POSIX way; some
    // file systems refuse it, which only weakens durability, not atomicity.
    match File::open(dir) {
        Ok(d) => match d.sync_all() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput || e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Writes `target` atomically: `write` fills a buffered temporary file in the
/// same directory, which is then synced and renamed onto `target`. On any
/// error the temporary file is removed and `target` is untouched.
pub fn write_atomic<F>(target: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let dir = parent_dir(target);
    let temp = temp_path_for(target);
    let result = (|| {
        let file = File::options().write(true).create_new(true).open(&temp)?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        write(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, target)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// [`write_atomic`] for writers that need a path (plotters, a library's
/// `save(path)`): `write` creates the temporary path it is given; that file is
/// then synced, renamed onto `target` and the directory synced.
pub fn write_atomic_via_path<E, F>(target: &Path, write: F) -> Result<(), E>
where
    F: FnOnce(&Path) -> Result<(), E>,
    E: From<io::Error>,
{
    let dir = parent_dir(target);
    let temp = temp_path_for(target);
    let result = write(&temp).and_then(|()| {
        (|| {
            File::open(&temp)?.sync_all()?;
            std::fs::rename(&temp, target)?;
            sync_dir(&dir)
        })()
        .map_err(E::from)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Takes an exclusive `flock` on `file`, held until the file is closed (or
/// the process dies, however). With `wait` false, `Ok(false)` means another
/// process holds it now. A file system without locks grants it (`Ok(true)`):
/// there is then no coordination, and the guarded work is merely done twice.
pub fn lock_exclusive(file: &File, wait: bool) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let flags = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        // SAFETY: flock on a file descriptor the caller owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), flags) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) => return Ok(true),
            _ => return Err(e),
        }
    }
}

/// Renames `from` (a finished file or directory) onto `to` and syncs the
/// directory of `to`, so the move survives a crash.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    sync_dir(&parent_dir(to))
}

fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// [`write_atomic`] for a byte buffer already in memory.
pub fn write_bytes_atomic(target: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(target, |w| w.write_all(bytes))
}

/// Whether a process with this id exists on this host.
fn process_alive(pid: u32) -> bool {
    // kill(pid, 0) checks existence without sending anything; EPERM means it exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Deletes temporary files in `dir` left behind by dead writers of this host
/// (a run killed mid-write). Returns the paths removed. Files of live
/// processes and of other hosts are kept.
pub fn remove_stale_temp_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let host = host_name();
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix(&format!("{host}-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let path = entry.path();
            if std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
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
        let target = dir.path().join("index.json");
        write_bytes_atomic(&target, b"first").unwrap();
        write_bytes_atomic(&target, b"second").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second");

        let err = write_atomic(&target, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("writer failed"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("index.json")]);
    }

    #[test]
    fn path_writers_and_directory_moves_are_atomic_too() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("plot.svg");
        write_atomic_via_path(&target, |tmp| {
            assert_ne!(tmp, target.as_path());
            assert!(
                tmp.to_string_lossy().ends_with("plot.svg"),
                "extension kept for format detection"
            );
            std::fs::write(tmp, b"<svg/>")
        })
        .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"<svg/>");
        let failed: io::Result<()> = write_atomic_via_path(&target, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(io::Error::other("plotting failed"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"<svg/>");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file removed"
        );

        let partial = dir.path().join("model.partial");
        std::fs::create_dir(&partial).unwrap();
        std::fs::write(partial.join("a"), b"x").unwrap();
        rename_durable(&partial, &dir.path().join("model")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("model/a")).unwrap(), b"x");
    }

    #[test]
    fn stale_temp_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let host = host_name();
        // A pid above the kernel's pid_max never names a live process.
        let dead = dir
            .path()
            .join(format!("{TEMP_PREFIX}{host}-99999999-00ff-shard.safetensors"));
        let mine = dir.path().join(format!(
            "{TEMP_PREFIX}{host}-{}-00ff-shard.safetensors",
            std::process::id()
        ));
        let other_host = dir
            .path()
            .join(format!("{TEMP_PREFIX}elsewhere-1-00ff-shard.safetensors"));
        for p in [&dead, &mine, &other_host] {
            std::fs::write(p, b"x").unwrap();
        }
        let removed = remove_stale_temp_files(dir.path()).unwrap();
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists() && mine.exists() && other_host.exists());
    }
}
