//! The on-disk cache of compiled policies, so a restart does not recompile.
//!
//! An entry is named after the component's SHA-256 and the engine's
//! compatibility hash (wasmtime version, target, settings that change code), and
//! holds `Component::serialize` output followed by its own SHA-256. An entry whose
//! checksum does not match (a torn write, a flipped bit) is ignored and rewritten;
//! entries are written to a temporary file and renamed into place, so readers
//! never see half of one. The directory is created private to the user, and a
//! directory that is not (another owner, writable by group or others) is not
//! used at all: the engine runs native code from it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bumped when the entry layout changes.
const FORMAT: u32 = 1;
const CHECKSUM_LEN: usize = 32;

/// A directory of compiled components for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> ArtifactCache {
        let mut hasher = DefaultHasher::new();
        FORMAT.hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// The entry for a component with this SHA-256 (hex).
    pub fn entry_path(&self, module_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{module_sha256}-{}.cwasm", self.engine_key))
    }

    /// The compiled component, when a valid entry exists. A corrupt entry is
    /// removed (and reported in the log).
    pub fn load(&self, engine: &Engine, module_sha256: &str) -> Option<Component> {
        // An untrusted directory is not read; `store` says why.
        private_to_this_user(&self.dir).ok()?;
        let path = self.entry_path(module_sha256);
        let bytes = std::fs::read(&path).ok()?;
        let valid = bytes.len() > CHECKSUM_LEN && {
            let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
            Sha256::digest(body).as_slice() == sum
        };
        let loaded = if valid {
            let body = &bytes[..bytes.len() - CHECKSUM_LEN];
            // SAFETY: the bytes are `Component::serialize` output written by this
            // cache for this engine configuration (the name carries the engine's
            // compatibility hash, the checksum proves the entry is whole), in a
            // directory only this user can write.
            unsafe { Component::deserialize(engine, body) }.map_err(|e| format!("{e:#}"))
        } else {
            Err("checksum mismatch".to_owned())
        };
        match loaded {
            Ok(component) => Some(component),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "ignoring corrupt policy cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes the entry for a compiled component. Failures are logged, not
    /// returned: the cache only saves time.
    pub fn store(&self, module_sha256: &str, component: &Component) {
        if let Err(err) = self.try_store(module_sha256, component) {
            tracing::warn!(dir = %self.dir.display(), error = %err, "could not write policy cache entry");
        }
    }

    fn try_store(&self, module_sha256: &str, component: &Component) -> Result<(), String> {
        let mut body = component.serialize().map_err(|e| format!("{e:#}"))?;
        let sum = Sha256::digest(&body);
        body.extend_from_slice(&sum);
        create_private_dir(&self.dir).map_err(|e| e.to_string())?;
        private_to_this_user(&self.dir)?;
        let path = self.entry_path(module_sha256);
        let tmp = self.dir.join(format!(
            ".{module_sha256}.{}.{:x}.tmp",
            std::process::id(),
            fastrand::u64(..)
        ));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut file| {
                file.write_all(&body)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(err) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(err.to_string());
        }
        Ok(())
    }
}

/// Whether `dir` may hold code the engine runs: it must belong to this user
/// and be writable by no one else. `create_private_dir` makes it so, but a
/// configured `cache_dir` may already exist, made by someone else; anyone who
/// can write an entry there could run native code in the gateway.
fn private_to_this_user(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(format!(
            "{} belongs to another user (uid {}); not using it",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o}); not using it",
            dir.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn only_a_directory_private_to_this_user_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let set_mode = |mode| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set_mode(0o700);
        assert_eq!(private_to_this_user(dir.path()), Ok(()));
        set_mode(0o777);
        let err = private_to_this_user(dir.path()).unwrap_err();
        assert!(err.contains("writable by group or others"), "{err}");
    }
}
