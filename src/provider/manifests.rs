//! The manifests provider: every `*.yaml`/`*.yml` file below a folder (recursively,
//! multi-document), read into a [`Store`](super::Store), and a watcher that says when to read it again.
//!
//! A file that stops parsing (an editor's half-written save, a typo) reports the objects last
//! read from it as unreadable, as an object that stops decoding is: translation's
//! [`LastGood`](crate::translate::LastGood) serves their last good versions, so an invalid
//! update never takes routes away.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::decode::{Decoded, decode};
use super::{Loaded, Object, ObjectKey};
use crate::diagnostics::Diagnostic;

/// Directory depth past which fjord stops descending (guards against symlink loops).
const MAX_DEPTH: usize = 16;

/// A manifests folder, with the objects each file held when last read.
#[derive(Debug)]
pub struct ManifestsDir {
    root: PathBuf,
    held: HashMap<PathBuf, Vec<ObjectKey>>,
}

impl ManifestsDir {
    /// The folder `root`, not read yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            held: HashMap::new(),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads every manifest file. Fails only when the folder itself cannot be read.
    pub fn load(&mut self) -> std::io::Result<Loaded> {
        let mut files = Vec::new();
        collect_files(&self.root, 0, &mut files)?;
        files.sort();

        let mut loaded = Loaded::default();
        let mut held = HashMap::with_capacity(files.len());
        for file in files {
            let shown = file
                .strip_prefix(&self.root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let previous = self.held.get(&file).map_or(&[][..], Vec::as_slice);
            let read = read_file(&file, &shown, previous, &mut loaded.diagnostics);
            loaded.unreadable.extend(read.unreadable.iter().cloned());
            let keys = read.objects.iter().map(Object::key);
            held.insert(file, keys.chain(read.unreadable).collect());
            for object in read.objects {
                if let Err(dup) = loaded.store.insert(object) {
                    loaded.diagnostics.push(Diagnostic::error(
                        dup.to_string(),
                        format!("defined again in {shown}; the first definition is served"),
                    ));
                }
            }
        }
        self.held = held;
        Ok(loaded)
    }
}

/// What one file yielded.
struct Read {
    objects: Vec<Object>,
    /// Objects the file holds (or, when it cannot be read at all, held when last read) whose
    /// current version could not be read.
    unreadable: BTreeSet<ObjectKey>,
}

/// The objects of one file, and those it names that could not be read; `previous` is what the
/// file held when last read.
fn read_file(
    path: &Path,
    shown: &str,
    previous: &[ObjectKey],
    diagnostics: &mut Vec<Diagnostic>,
) -> Read {
    let unreadable = |why: String, diagnostics: &mut Vec<Diagnostic>| {
        let why = if previous.is_empty() {
            why
        } else {
            format!(
                "{why}; still serving the {} object(s) last read from it",
                previous.len()
            )
        };
        diagnostics.push(Diagnostic::error(shown, why));
        Read {
            objects: Vec::new(),
            unreadable: previous.iter().cloned().collect(),
        }
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return unreadable(format!("cannot read: {e}"), diagnostics),
    };
    let docs = match parse_documents(&text) {
        Ok(docs) => docs,
        Err(e) => {
            return unreadable(parse_error(&e), diagnostics);
        }
    };
    let mut decoded = Vec::with_capacity(docs.len());
    for doc in docs {
        decode(doc, shown, &mut decoded);
    }
    let mut read = Read {
        objects: Vec::with_capacity(decoded.len()),
        unreadable: BTreeSet::new(),
    };
    for d in decoded {
        match d {
            Decoded::Object(o) => read.objects.push(o),
            Decoded::Ignored => {}
            Decoded::Unread(mut diagnostic) => {
                diagnostic.message = format!("{} ({shown})", diagnostic.message);
                diagnostics.push(diagnostic);
            }
            Decoded::Invalid {
                key,
                mut diagnostic,
            } => {
                read.unreadable.extend(key);
                diagnostic.message = format!("{} ({shown})", diagnostic.message);
                diagnostics.push(diagnostic);
            }
        }
    }
    read
}

/// The documents of a (multi-document) YAML text, each as a generic value.
///
/// The parser's budget stops YAML bombs (aliases expanding without end, deep nesting, huge
/// scalars). A count of documents is not one: a rendered bundle of a few thousand Ingresses is
/// ordinary, so documents are not limited, and nodes and events only well above any bundle.
pub fn parse_documents(text: &str) -> Result<Vec<serde_json::Value>, serde_saphyr::Error> {
    let defaults = serde_saphyr::Budget::default();
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: usize::MAX,
            max_nodes: defaults.max_nodes * 40,
            max_events: defaults.max_events * 40,
        },
    };
    serde_saphyr::from_multiple_with_options(text, options)
}

/// A parse error in words an operator can act on: a breached budget says which limit was hit
/// and what to do.
fn parse_error(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error;
    let mut cause = e;
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = cause {
        cause = error;
    }
    match cause {
        Error::Budget { breach, .. } => format!(
            "refused by the YAML parser's protection against YAML bombs ({breach:?}): the file \
             uses too many aliases, nests too deep, or is too large; split it into several files"
        ),
        _ => format!("invalid YAML: {}", e.without_snippet()),
    }
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        // Dot entries are editor droppings and, in a mounted ConfigMap, the `..data` twins of
        // the real files.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // a dangling symlink
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                collect_files(&path, depth + 1, out)?;
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// The changes to a watched folder: a signal per burst of them, and a count of every one.
#[derive(Debug)]
pub struct Changes {
    bursts: mpsc::Receiver<()>,
    events: Arc<AtomicU64>,
    settle: Duration,
}

impl Changes {
    /// Waits for the next burst of changes; false once the watcher is gone. Blocks.
    pub fn wait(&mut self) -> bool {
        self.bursts.blocking_recv().is_some()
    }

    /// Reads `dir` once it holds still: a file rewritten in place (truncated, then written)
    /// can be read between the two, empty, and applying that read would take every route it
    /// held away. A read the folder changed during, or within `settle` after (the events of
    /// a write under way arrive by then), is made again. Blocks.
    pub fn read_stable(&self, dir: &mut ManifestsDir) -> std::io::Result<Loaded> {
        loop {
            let before = self.events.load(Ordering::Acquire);
            let loaded = dir.load()?;
            std::thread::sleep(self.settle);
            if self.events.load(Ordering::Acquire) == before {
                return Ok(loaded);
            }
            tracing::debug!(folder = %dir.root().display(), "manifests changed while being read; reading again");
        }
    }
}

/// Watches `root` recursively. [`Changes`] gets one message per burst of changes, sent once the
/// folder has been quiet for `settle`, so an editor's write-rename-chmod is one reload.
pub fn watch(
    root: &Path,
    settle: Duration,
) -> notify::Result<(notify::RecommendedWatcher, Changes)> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel();
    let events = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&events);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // Reading the files (our own reload included) must not trigger a reload.
            Ok(e) => match e.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) => false,
                _ => true,
            },
            Err(_) => true,
        };
        if relevant {
            counted.fetch_add(1, Ordering::Release);
            let _ = raw_tx.send(());
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;

    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Debounce: wait until no event arrived for `settle`.
            loop {
                match tokio::time::timeout(settle, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // A full channel already holds a pending reload, which will read these changes too.
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                return;
            }
        }
    });
    let changes = Changes {
        bursts: rx,
        events,
        settle,
    };
    Ok((watcher, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str =
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n";

    #[test]
    fn reads_nested_multi_document_files_and_skips_dot_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("..data")).unwrap();
        std::fs::write(
            dir.path().join("a/b/two.yml"),
            format!("{SVC}---\napiVersion: v1\nkind: Service\nmetadata: {{name: api}}\nspec: {{ports: [{{port: 80}}]}}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("..data/web.yaml"), SVC).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        let loaded = ManifestsDir::new(dir.path()).load().unwrap();
        assert_eq!(loaded.store.len(), 2);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    }

    fn web() -> ObjectKey {
        ObjectKey {
            kind: "Service",
            namespace: Some("default".into()),
            name: "web".into(),
        }
    }

    #[test]
    fn a_broken_file_names_what_was_last_read_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, SVC).unwrap();
        let mut manifests = ManifestsDir::new(dir.path());
        assert_eq!(manifests.load().unwrap().store.len(), 1);

        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Service\nmetadata: {name: web\n",
        )
        .unwrap();
        let loaded = manifests.load().unwrap();
        assert!(loaded.store.is_empty());
        assert_eq!(
            loaded.unreadable,
            [web()].into(),
            "the last good Service stands in"
        );
        let msg = loaded.diagnostics[0].to_string();
        assert!(msg.starts_with("error: web.yaml: invalid YAML"), "{msg}");
        assert!(msg.contains("still serving the 1 object(s)"), "{msg}");

        let again = manifests.load().unwrap();
        assert_eq!(again.unreadable, [web()].into(), "while it stays broken");

        std::fs::remove_file(&file).unwrap();
        let loaded = manifests.load().unwrap();
        assert!(
            loaded.store.is_empty() && loaded.unreadable.is_empty(),
            "removing the file removes it"
        );
    }

    #[test]
    fn an_invalid_object_is_named_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, SVC).unwrap();
        let mut manifests = ManifestsDir::new(dir.path());
        manifests.load().unwrap();
        std::fs::write(&file, SVC.replace("ports:", "portz:")).unwrap();
        let loaded = manifests.load().unwrap();
        assert!(loaded.store.is_empty());
        assert_eq!(loaded.unreadable, [web()].into());
        let msg = loaded.diagnostics[0].to_string();
        assert!(
            msg.contains("Service default/web: spec.portz: unknown field"),
            "{msg}"
        );
    }

    #[test]
    fn duplicates_keep_the_first_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), SVC).unwrap();
        std::fs::write(dir.path().join("b.yaml"), SVC).unwrap();
        let loaded = ManifestsDir::new(dir.path()).load().unwrap();
        assert_eq!(loaded.store.len(), 1);
        assert_eq!(
            loaded.diagnostics[0].to_string(),
            "error: Service default/web: defined again in b.yaml; the first definition is served"
        );
    }
}
