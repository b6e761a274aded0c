//! The on-disk cache of compiled policies, so a restart does not recompile.
//!
//! An entry is named after the component's SHA-256 and the engine's
//! compatibility hash (wasmtime version, target, settings that change code), and
//! holds `Component::serialize` output followed by its own SHA-256. An entry whose
//! checksum does not match (a torn write, a flipped bit) is ignored and rewritten;
//! entries are written to a temporary file and renamed into place, so readers
//! never see half of one. The directory is created private to the user: the
//! engine runs native code from it.

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
