//! Reading a file someone else may have put in place: a regular file only (a device or a
//! pipe is refused, never waited on), and never more than a bound.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The bytes of the regular file at `path` (links followed), at most `max`.
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    read_open(f, max)
}

/// The bytes of the open file `f`, which must be a regular file, at most `max`.
pub fn read_open(f: std::fs::File, max: u64) -> std::io::Result<Vec<u8>> {
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if md.len() > max {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB",
            max >> 10
        )));
    }
    let mut out = Vec::with_capacity(md.len() as usize);
    f.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other("grew past its limit while read"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_bound() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"hello");
        assert!(read_regular(&f, 4)
            .unwrap_err()
            .to_string()
            .contains("larger"));
        for p in ["/dev/zero", "/dev/null", "/"] {
            let e = read_regular(Path::new(p), 1 << 20);
            assert!(e.is_err(), "{p}");
        }
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_regular(&fifo, 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
    }
}
