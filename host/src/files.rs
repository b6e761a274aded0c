//! Reading the files a config names (policies, their cases, credentials):
//! regular files only, opened without blocking. A FIFO or device named by
//! mistake is an error, never a start-up or reload that hangs on it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Reads the regular file at `path` (symlinks followed), refusing one larger
/// than `limit` bytes. `O_NONBLOCK` lets a FIFO's open return at once; the
/// type is then checked on the opened file itself, so it cannot change between
/// the check and the read.
pub fn read_regular(path: &Path, limit: Option<u64>) -> io::Result<Vec<u8>> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    match limit {
        Some(limit) => {
            file.take(limit + 1).read_to_end(&mut bytes)?;
            if bytes.len() as u64 > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("larger than {limit} bytes"),
                ));
            }
        }
        None => {
            let mut file = file;
            file.read_to_end(&mut bytes)?;
        }
    }
    Ok(bytes)
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
    }
}
