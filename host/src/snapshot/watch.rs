//! Watching the config file, the policy files and the upstreams' credential
//! files, and reloading when they change.
//!
//! Files change in many ways: renamed into place, truncated and rewritten, copied
//! in several writes, or swapped in through a symlink (the Kubernetes ConfigMap
//! layout swaps a `..data` symlink). So the watch is on *directories*: each
//! file's parent, and the parent of the file it resolves to through symlinks. Any
//! event there (other than reads) leads to a look at the watched files themselves:
//!
//! 1. **Settle**: wait until their size, mtime and inode stay the same for
//!    `settle` with no new event in between, and until no watched file is open
//!    for writing (a write in place that has not been closed yet, as an `scp`
//!    that stalls mid-file leaves it; a config cut at a line boundary would
//!    parse). A file left open longer than `open_wait` is read anyway.
//! 2. **Changed?**: compare their contents (SHA-256) with what the last reload
//!    saw; a change to some other file in the same directory reloads nothing
//!    (and reads nothing: a file whose metadata did not change is not re-read).
//! 3. **Reload** as an [`Attempt::Tentative`]: a file that does not load may still
//!    be being written, so it is retried every `retry` until `grace` has passed
//!    since the last event; only then is a failure final (logged, counted in
//!    `switchyard_policy_reloads_total{result="error"}`, shown by the admin API).
//!
//! Events can be missed: a watched directory removed and made again loses its
//! watch (and its parent may not be watched), and an event queue can overflow.
//! So the files are also looked at every `poll` (10 s) with no event: they are
//! stat'ed (only a changed one is read), the config on disk is parsed again to
//! follow the files it names, and any directory made anew is watched again.
//!
//! One task does all of this, so file-triggered reloads run one at a time and a
//! burst of events becomes one reload. The set of watched files and directories
//! is recomputed after every check, from the installed config and the config on
//! disk, so new policies and new symlink targets are followed.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::time::{Instant, timeout};

use super::{Attempt, SnapshotError};
use crate::config::Config;
use crate::gateway::Gateway;

/// Timing of the file watch.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// How long the files must stay unchanged, with no event, before a reload.
    pub settle: Duration,
    /// How often a reload that failed tentatively is retried.
    pub retry: Duration,
    /// How long after the last event a failing file counts as "still being
    /// written" before its failure is reported.
    pub grace: Duration,
    /// Longest wait for a watched file written in place to be closed.
    pub open_wait: Duration,
    /// How often the files are looked at with no event: a safety net for
    /// changes no event reported (a watched directory removed and made again,
    /// an overflowed event queue). A look stats the files and reads none that
    /// did not change.
    pub poll: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            settle: Duration::from_millis(50),
            retry: Duration::from_millis(100),
            grace: Duration::from_millis(1500),
            open_wait: Duration::from_secs(5),
            poll: Duration::from_secs(10),
        }
    }
}

/// The config, policy and credential files as they were before the gateway loaded them:
/// what the watch compares against first. Read it before the first snapshot is
/// built, so that a file changed while that build ran (seconds, for a JS or
/// Python policy compiled afresh) is seen as changed, not taken for what was
/// loaded.
pub struct Baseline(Contents);

impl Baseline {
    /// Reads `config_path` and the files its policies and upstreams name. Blocking: a few
    /// files, once, at start-up.
    pub fn read(config_path: &Path) -> Baseline {
        let mut files = BTreeSet::from([config_path.to_path_buf()]);
        if let Ok(config) = Config::load(config_path) {
            files_of(&config, &mut files);
        }
        let files = files.into_iter().collect();
        Baseline(read_contents(files, Contents::new(), Reuse::SameStat))
    }
}

/// A running watch over the config file and the policy and credential files it names. Dropping
/// it stops watching.
pub struct FileWatch {
    task: tokio::task::JoinHandle<()>,
}

impl FileWatch {
    /// Starts watching `config_path` and the files of `gateway`'s config; `reload`
    /// rebuilds and installs the snapshot (e.g. [`super::Reloader::reload_with`]).
    /// `baseline` is what the files held before the snapshot was built; the
    /// watch compares against it at once, then after every change. Must be
    /// called inside a tokio runtime.
    pub fn start<R, F>(
        config_path: PathBuf,
        gateway: Arc<Gateway>,
        settings: WatchSettings,
        baseline: Baseline,
        reload: R,
    ) -> Result<FileWatch, notify::Error>
    where
        R: Fn(Attempt) -> F + Send + 'static,
        F: Future<Output = Result<super::Reloaded, Arc<SnapshotError>>> + Send + 'static,
    {
        // A stored permit stands for "something changed since you last looked":
        // any number of events coalesce into one.
        let events = Arc::new(Notify::new());
        let signal = events.clone();
        let open = Arc::new(OpenForWrite::default());
        let writers = open.clone();
        let notifier = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = &event {
                writers.note(event);
            }
            if is_change(&event) {
                signal.notify_one();
            }
        })?;
        let mut files = WatchedFiles {
            notifier,
            config_path,
            gateway,
            files: Vec::new(),
            dirs: BTreeMap::new(),
            unwatchable: BTreeSet::new(),
            open,
        };
        files.refresh();
        // Changes made before the directories were watched sent no event: look
        // once now, against the files as they were before the first build.
        events.notify_one();
        let Baseline(seen) = baseline;
        tracing::info!(
            files = files.files.len(),
            directories = files.dirs.len(),
            "watching the config, policy and credential files for changes"
        );
        let task = tokio::spawn(watch(files, seen, events, settings, reload));
        Ok(FileWatch { task })
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watch loop: wait for an event, let the files settle, reload if their
/// contents changed, retrying through the grace period.
async fn watch<R, F>(
    mut files: WatchedFiles,
    mut seen: Contents,
    events: Arc<Notify>,
    settings: WatchSettings,
    reload: R,
) where
    R: Fn(Attempt) -> F,
    F: Future<Output = Result<super::Reloaded, Arc<SnapshotError>>>,
{
    // `seen`: the contents the installed snapshot (or the last final failure)
    // was built from.
    loop {
        // An event, or the poll's turn: either way the files are looked at.
        let _ = timeout(settings.poll, events.notified()).await;
        files.settle(&events, &settings).await;
        let mut current = files.contents(&seen, Reuse::SameStat).await;
        if same_sums(&current, &seen) {
            // Same contents, maybe new metadata (a `touch`): keep that, so
            // the next look does not read the file again.
            seen = current;
            files.refresh();
            continue;
        }
        tracing::info!("config, policy or credential files changed: reloading");
        let mut deadline = Instant::now() + settings.grace;
        let mut waiting = false;
        loop {
            let attempt = if Instant::now() >= deadline {
                Attempt::Final
            } else {
                Attempt::Tentative
            };
            match reload(attempt).await {
                Ok(_) => break,
                Err(_) if attempt == Attempt::Final => break,
                // Said once per change; the retries log at debug level.
                Err(err) if !waiting => {
                    waiting = true;
                    tracing::info!(
                        error = %err,
                        "changed files do not load yet (still being written?); retrying"
                    );
                }
                Err(_) => {}
            }
            // Not loadable (yet): wait for the next write or the retry interval.
            if timeout(settings.retry, events.notified()).await.is_ok() {
                files.settle(&events, &settings).await;
                current = files.contents(&current, Reuse::SameStat).await;
                deadline = Instant::now() + settings.grace;
            }
        }
        // The config may name other files now. Files written during the reload
        // have left a permit, so a change made meanwhile is looked at next.
        files.refresh();
        seen = files.contents(&current, Reuse::Always).await;
    }
}

/// Whether an event may mean a file changed; opening and reading do not (the
/// reload itself reads the files).
fn is_change(event: &notify::Result<notify::Event>) -> bool {
    match event {
        Ok(event) => match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        },
        // An overflowed queue or a failing backend: look, to be safe.
        Err(_) => true,
    }
}

/// What a file looks like on disk without reading it.
type Stat = Option<(u64, SystemTime, u64, u64)>;

/// The files that matter and the directories watched for them.
struct WatchedFiles {
    notifier: RecommendedWatcher,
    config_path: PathBuf,
    gateway: Arc<Gateway>,
    files: Vec<PathBuf>,
    /// Watched directories and the identity (device, inode) each had when its
    /// watch was set: a directory removed and made again needs a new watch.
    dirs: BTreeMap<PathBuf, (u64, u64)>,
    /// Directories that could not be watched (warned about once).
    unwatchable: BTreeSet<PathBuf>,
    /// Files written in place and not closed yet.
    open: Arc<OpenForWrite>,
}

/// Paths written in place and not closed yet, from the watcher's events.
#[derive(Default)]
struct OpenForWrite(std::sync::Mutex<BTreeSet<PathBuf>>);

impl OpenForWrite {
    /// Follows one event: data written opens a path, closing it after writing,
    /// renaming or removing it closes it. Only inotify (Linux) reports closes;
    /// elsewhere nothing is tracked and settling goes by metadata alone.
    fn note(&self, event: &notify::Event) {
        use notify::event::ModifyKind;
        if !cfg!(target_os = "linux") {
            return;
        }
        // Only data written opens a path: a creation may be a link or a fifo,
        // which no close-after-write follows.
        let opened = match event.kind {
            EventKind::Modify(ModifyKind::Data(_)) => true,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_) => false,
            _ => return,
        };
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: files written in the watched directories but never closed
        // (a process killed mid-write) must not pile up.
        if open.len() > 1024 {
            open.clear();
        }
        for path in &event.paths {
            let path = lexical(path);
            if opened {
                open.insert(path);
            } else {
                open.remove(&path);
            }
        }
    }

    /// Whether any of `files` is open for writing.
    fn any(&self, files: &[PathBuf]) -> bool {
        let open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        !open.is_empty() && files.iter().any(|file| open.contains(&lexical(file)))
    }
}

/// `path` made absolute without resolving symlinks, with `.` components
/// dropped: a watched `switchyard.toml` and the watcher's `./switchyard.toml`
/// compare equal.
fn lexical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute
        .components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect()
}

impl WatchedFiles {
    /// Recomputes the files (the config, each policy's component and cases and
    /// each upstream's credential file, in the installed config and in the
    /// config on disk) and watches their directories and their symlink
    /// targets' directories (again, for one that was made anew).
    fn refresh(&mut self) {
        let installed = self.gateway.snapshot();
        let on_disk = Config::load(&self.config_path).ok();
        let mut files = BTreeSet::from([self.config_path.clone()]);
        for config in [Some(&*installed.config), on_disk.as_ref()]
            .into_iter()
            .flatten()
        {
            files_of(config, &mut files);
        }
        let mut dirs = BTreeSet::new();
        for file in &files {
            dirs.insert(parent(file));
            if let Ok(target) = std::fs::canonicalize(file) {
                dirs.insert(parent(&target));
            }
        }
        let mut watched = BTreeMap::new();
        let mut unwatchable = BTreeSet::new();
        for dir in dirs {
            let identity = dir_identity(&dir);
            let current = self.dirs.remove(&dir);
            if let Some(same) = current.filter(|c| Some(*c) == identity) {
                watched.insert(dir, same);
                continue;
            }
            if current.is_some() {
                // Removed, maybe made again: its old watch is gone with it.
                let _ = self.notifier.unwatch(&dir);
            }
            match (
                identity,
                self.notifier.watch(&dir, RecursiveMode::NonRecursive),
            ) {
                (Some(identity), Ok(())) => {
                    watched.insert(dir, identity);
                }
                (_, result) => {
                    if let Err(err) = result
                        && !self.unwatchable.contains(&dir)
                    {
                        tracing::warn!(dir = %dir.display(), error = %err, "cannot watch directory");
                    }
                    unwatchable.insert(dir);
                }
            }
        }
        for gone in self.dirs.keys() {
            // Fails when the directory is already gone (an old ConfigMap version).
            let _ = self.notifier.unwatch(gone);
        }
        self.dirs = watched;
        self.unwatchable = unwatchable;
        self.files = files.into_iter().collect();
    }

    /// Waits until no event arrives and the files' metadata stays the same for
    /// `settle`, and no watched file is open for writing (for at most
    /// `open_wait`): a writer has finished (or paused).
    async fn settle(&self, events: &Notify, settings: &WatchSettings) {
        let open_until = Instant::now() + settings.open_wait;
        loop {
            let before = self.stats();
            let quiet = timeout(settings.settle, events.notified()).await.is_err();
            if quiet && self.stats() == before {
                if !self.open.any(&self.files) {
                    return;
                }
                if Instant::now() >= open_until {
                    tracing::debug!("a watched file is still open for writing; reading it anyway");
                    return;
                }
            }
        }
    }

    fn stats(&self) -> Vec<Stat> {
        self.files.iter().map(|file| stat(file)).collect()
    }

    /// Each file's metadata and SHA-256 (none when unreadable). A file listed
    /// in `known` keeps its entry there as `reuse` says, unread.
    async fn contents(&self, known: &Contents, reuse: Reuse) -> Contents {
        let files = self.files.clone();
        let known = known.clone();
        tokio::task::spawn_blocking(move || read_contents(files, known, reuse))
            .await
            .unwrap_or_default()
    }
}

/// Adds each policy's component and cases file, and each upstream's credential
/// file, named in `config` to `files`.
fn files_of(config: &Config, files: &mut BTreeSet<PathBuf>) {
    for policy in &config.policies {
        files.insert(config.resolve_path(&policy.file));
        if let Some(tests) = &policy.tests {
            files.insert(config.resolve_path(tests));
        }
    }
    files.extend(config.credential_files().map(Path::to_path_buf));
}

/// Each of `files`' metadata and SHA-256 (none when unreadable); an entry of
/// `known` is kept unread as `reuse` says. Blocking.
fn read_contents(files: Vec<PathBuf>, known: Contents, reuse: Reuse) -> Contents {
    files
        .into_iter()
        .map(|file| {
            let stat = stat(&file);
            let entry = match known.get(&file) {
                Some(entry) if reuse == Reuse::Always => *entry,
                // Unchanged metadata: the same content (a later write would
                // carry a later mtime, as the file has settled). Not for a
                // file that could not be read: a chmod or chown, which leaves
                // size and mtime alone, may have made it readable.
                Some(entry) if stat.is_some() && entry.0 == stat && entry.1.is_some() => *entry,
                _ => (stat, crate::files::sha256_regular(&file).ok()),
            };
            (file, entry)
        })
        .collect()
}

/// Files' metadata and content hashes.
type Contents = BTreeMap<PathBuf, (Stat, Option<[u8; 32]>)>;

/// When [`WatchedFiles::contents`] takes a known entry instead of reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reuse {
    /// When the file's metadata is unchanged.
    SameStat,
    /// Always (new files only are read).
    Always,
}

/// Whether both list the same files with the same contents.
fn same_sums(a: &Contents, b: &Contents) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((path_a, (_, sum_a)), (path_b, (_, sum_b)))| path_a == path_b && sum_a == sum_b)
}

fn stat(file: &Path) -> Stat {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(file).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino(), meta.dev()))
}

/// A directory's device and inode, if it exists.
fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The directory holding `file` (`.` for a bare file name).
fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    #[test]
    fn reads_are_not_changes() {
        let event = |kind| Ok(notify::Event::new(kind));
        assert!(!is_change(&event(EventKind::Access(AccessKind::Open(
            AccessMode::Any
        )))));
        assert!(!is_change(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        )))));
        assert!(is_change(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        )))));
        assert!(is_change(&event(EventKind::Create(CreateKind::File))));
        assert!(is_change(&event(EventKind::Modify(ModifyKind::Any))));
        assert!(is_change(&Err(notify::Error::generic("overflow"))));
    }

    #[test]
    fn only_contents_count_as_changes() {
        let touched = Some((3, SystemTime::now(), 1, 1));
        let entry = |stat, sum: u8| (PathBuf::from("/p.wasm"), (stat, Some([sum; 32])));
        let a = Contents::from([entry(None, 1)]);
        assert!(same_sums(&a, &Contents::from([entry(touched, 1)])));
        assert!(!same_sums(&a, &Contents::from([entry(None, 2)])));
        assert!(!same_sums(&a, &Contents::new()));
    }

    #[test]
    fn an_unreadable_file_is_read_again_though_its_metadata_did_not_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "sk-1").unwrap();
        let stat = stat(&file);
        // Last looked at while unreadable (e.g. mode 000, then chmod: same
        // size and mtime): read now, not taken as still unreadable.
        let known = Contents::from([(file.clone(), (stat, None))]);
        let now = read_contents(vec![file.clone()], known, Reuse::SameStat);
        assert!(now[&file].1.is_some());
        // A readable one with the same metadata is not read again.
        let known = Contents::from([(file.clone(), (stat, Some([7; 32])))]);
        let now = read_contents(vec![file.clone()], known, Reuse::SameStat);
        assert_eq!(now[&file].1, Some([7; 32]));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_file_written_in_place_is_open_until_closed() {
        use notify::event::{DataChange, ModifyKind, RenameMode};
        let open = OpenForWrite::default();
        let watched = vec![PathBuf::from("switchyard.toml")];
        let event = |kind| notify::Event::new(kind).add_path(PathBuf::from("./switchyard.toml"));
        open.note(&event(EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        assert!(open.any(&watched), "written, not closed");
        open.note(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Write,
        ))));
        assert!(!open.any(&watched), "closed");
        open.note(&event(EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        open.note(&event(EventKind::Modify(ModifyKind::Name(RenameMode::Any))));
        assert!(!open.any(&watched), "renamed away");
    }

    #[test]
    fn bare_names_live_in_the_working_directory() {
        assert_eq!(parent(Path::new("switchyard.toml")), PathBuf::from("."));
        assert_eq!(
            parent(Path::new("/etc/sy/a.wasm")),
            PathBuf::from("/etc/sy")
        );
    }
}
