//! `DIR/lb.pid`: one lb per data dir. An exclusive `flock` on the file, held as long as the
//! store is open, and the holder's pid in it, so a second lb can say whose dir it is. Taken
//! before anything else reads the dir (before sled, whose own lock would only say "lock").
//! The file stays when lb exits: unlocking is enough, and removing it would race with an lb
//! that just opened it. The kernel drops the lock with the process, crash included.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The lock file's name in the data dir.
pub const FILE: &str = "lb.pid";

/// The held lock; dropping it unlocks.
pub struct DirLock(File);

impl DirLock {
    /// Locks `dir`, or says which lb holds it. The pid is written by [`DirLock::claim`], once
    /// the store is known to be good: a refusal leaves the file as it was.
    pub fn take(dir: &Path) -> Result<DirLock, String> {
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "pid unknown".into(),
            };
            return Err(format!("another lb ({holder}) is using {}", dir.display()));
        }
        Ok(DirLock(file))
    }

    /// Writes this process's pid into the lock file.
    pub fn claim(&mut self) -> Result<(), String> {
        let f = &mut self.0;
        let pid = std::process::id();
        f.set_len(0)
            .and_then(|()| f.rewind())
            .and_then(|()| writeln!(f, "{pid}"))
            .map_err(|e| format!("cannot write {FILE}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let mut lock = DirLock::take(dir.path()).unwrap();
        lock.claim().unwrap();
        let err = DirLock::take(dir.path()).err().unwrap();
        assert_eq!(err, format!("another lb (pid {}) is using {}", std::process::id(), dir.path().display()));
        drop(lock);
        DirLock::take(dir.path()).unwrap();
    }
}
