//! Reading the files a config names (policies, their cases, credentials):
//! regular files only, opened without blocking. A FIFO or device named by
//! mistake is an error, never a start-up or reload that hangs on it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens the regular file at `path` (symlinks followed) for reading.
/// `O_NONBLOCK` lets a FIFO's open return at once; the type is then checked on
/// the opened file itself, so it cannot change between the check and the read.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Reads the regular file at `path` (see [`open_regular`]), refusing one
/// larger than `limit` bytes before reading more than that. Memory is
/// reserved fallibly: a file larger than memory is an error, not an abort.
pub fn read_regular(path: &Path, limit: Option<u64>) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    let cap = limit.map_or(len, |limit| len.min(limit + 1));
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(usize::try_from(cap).unwrap_or(usize::MAX))
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "too large to read"))?;
    file.take(limit.map_or(u64::MAX, |limit| limit + 1))
        .read_to_end(&mut bytes)?;
    if let Some(limit) = limit
        && bytes.len() as u64 > limit
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// The SHA-256 of the regular file at `path` (see [`open_regular`]), read in
/// pieces: a large file costs no more memory than a small one.
pub fn sha256_regular(path: &Path) -> io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    io::copy(&mut open_regular(path)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular(&file, None).unwrap(), b"12345");
        assert_eq!(read_regular(&file, Some(5)).unwrap(), b"12345");
        let err = read_regular(&file, Some(4)).unwrap_err();
        assert!(err.to_string().contains("larger than 4 bytes"), "{err}");

        let err = read_regular(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // A FIFO with no writer: a blocking open would never return.
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `name` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = read_regular(&fifo, None).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(read_regular(&dir.path().join("absent"), None).is_err());
        assert!(sha256_regular(&fifo).is_err());
        assert_eq!(
            hex::encode(sha256_regular(&file).unwrap()),
            "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5"
        );
    }
}
