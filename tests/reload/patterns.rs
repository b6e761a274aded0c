//! The ways a policy file really changes on disk, each replacing the file at
//! `DIR/policy/policy.wasm` (the path the config names) with new bytes.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a new policy file arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePattern {
    /// Written to a temporary name in the same directory, then renamed into place.
    AtomicRename,
    /// Truncated and rewritten in place.
    InPlace,
    /// Truncated, then written in pieces with pauses longer than the watcher's
    /// settle time, so half-written files are seen (and must not be installed).
    Pieces,
    /// The path is a symlink into `versions/`, a directory where files come and
    /// go: the new version is added, the link swapped, the old version deleted.
    DirectoryChurn,
    /// The Kubernetes ConfigMap layout: `policy.wasm -> ..data/policy.wasm`,
    /// `..data -> ..<version>/`, with `..data` swapped atomically.
    ConfigMap,
}

impl WritePattern {
    /// Every pattern, in an order where each starts from a layout the previous
    /// one left (in-place writes follow a rename, so they write a plain file).
    pub const CYCLE: [WritePattern; 5] = [
        WritePattern::AtomicRename,
        WritePattern::InPlace,
        WritePattern::Pieces,
        WritePattern::DirectoryChurn,
        WritePattern::ConfigMap,
    ];
}

/// The policy directory of a fixture and a counter for unique names.
pub struct PolicyDir {
    dir: PathBuf,
    serial: u64,
}

impl PolicyDir {
    /// `root/policy/`, holding `policy.wasm` with `initial` bytes.
    pub fn create(root: &Path, initial: &[u8]) -> PolicyDir {
        let dir = root.join("policy");
        fs::create_dir_all(dir.join("versions")).unwrap();
        fs::write(dir.join("policy.wasm"), initial).unwrap();
        PolicyDir { dir, serial: 0 }
    }

    /// The path the config names.
    pub fn path(&self) -> PathBuf {
        self.dir.join("policy.wasm")
    }

    /// Replaces the policy file's content with `bytes` the way `pattern` does.
    pub async fn write(&mut self, pattern: WritePattern, bytes: &[u8]) {
        self.serial += 1;
        match pattern {
            WritePattern::AtomicRename => self.rename_into_place(bytes),
            WritePattern::InPlace => {
                let mut file = self.truncate();
                file.write_all(bytes).unwrap();
            }
            WritePattern::Pieces => self.write_in_pieces(bytes).await,
            WritePattern::DirectoryChurn => self.swap_version_link(bytes),
            WritePattern::ConfigMap => self.swap_configmap(bytes),
        }
    }

    /// Writes garbage: by rename when `serial` is even, in place when odd.
    pub fn write_garbage(&mut self, bytes: &[u8]) {
        self.serial += 1;
        if self.serial.is_multiple_of(2) {
            self.rename_into_place(bytes);
        } else {
            self.truncate().write_all(bytes).unwrap();
        }
    }

    fn rename_into_place(&self, bytes: &[u8]) {
        let tmp = self.dir.join(format!(".policy.wasm.{}.tmp", self.serial));
        let mut file = fs::File::create(&tmp).unwrap();
        file.write_all(bytes).unwrap();
        file.sync_all().unwrap();
        fs::rename(&tmp, self.path()).unwrap();
    }

    fn truncate(&self) -> fs::File {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path())
            .unwrap()
    }

    async fn write_in_pieces(&self, bytes: &[u8]) {
        let mut file = self.truncate();
        let piece = bytes.len().div_ceil(4);
        let pauses = [10, 120, 60];
        for (i, chunk) in bytes.chunks(piece).enumerate() {
            file.write_all(chunk).unwrap();
            file.flush().unwrap();
            if let Some(ms) = pauses.get(i) {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
            }
        }
    }

    fn swap_version_link(&self, bytes: &[u8]) {
        let versions = self.dir.join("versions");
        let name = format!("v{}.wasm", self.serial);
        fs::write(versions.join(&name), bytes).unwrap();
        self.replace_with_link(Path::new("versions").join(&name));
        // Old versions go away; an unrelated file comes and goes too.
        for entry in fs::read_dir(&versions).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() != name.as_str() {
                fs::remove_file(path).unwrap();
            }
        }
        let noise = versions.join(format!("README.{}", self.serial));
        fs::write(&noise, "unrelated").unwrap();
        fs::remove_file(noise).unwrap();
    }

    fn swap_configmap(&self, bytes: &[u8]) {
        let version = format!("..2026_11_23_{:06}", self.serial);
        fs::create_dir(self.dir.join(&version)).unwrap();
        fs::write(self.dir.join(&version).join("policy.wasm"), bytes).unwrap();
        let tmp = self.dir.join("..data_tmp");
        symlink(&version, &tmp).unwrap();
        fs::rename(&tmp, self.dir.join("..data")).unwrap();
        // The first ConfigMap swap after another pattern links the file in.
        let linked = fs::read_link(self.path())
            .is_ok_and(|target| target == Path::new("..data/policy.wasm"));
        if !linked {
            self.replace_with_link(PathBuf::from("..data/policy.wasm"));
        }
        for entry in fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if name.starts_with("..2026") && name != version {
                fs::remove_dir_all(path).unwrap();
            }
        }
    }

    /// Atomically replaces the policy path with a symlink to `target`.
    fn replace_with_link(&self, target: PathBuf) {
        let tmp = self.dir.join(format!(".link.{}.tmp", self.serial));
        symlink(target, &tmp).unwrap();
        fs::rename(&tmp, self.path()).unwrap();
    }
}

/// Files that are not policies, each of which the gateway must refuse.
pub fn garbage(good: &[u8], n: u64) -> Vec<u8> {
    match n % 6 {
        // Half of a good component: a copy that stopped.
        0 => good[..good.len() / 2].to_vec(),
        1 => Vec::new(),
        2 => b"\0asm\x01\0\0\0".to_vec(),
        // A valid component that is not a policy (no exports).
        3 => b"(component)".to_vec(),
        4 => b"#!/bin/sh\necho not a policy\n".to_vec(),
        _ => (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect(),
    }
}
