//! The local-directory backend (`file:///dir`): a directory laid out like the bucket.
//!
//! User metadata lives in a sidecar `KEY.meta.json` beside each object.
//! Writes go to a temporary file that is fsynced and then linked into place,
//! so a reader never sees half an object and an existing object is never
//! replaced unless asked. ETags are `size-mtime` (not MD5): enough to notice
//! a changed file without reading it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;

use super::count::count_reader;

use super::{
    CountedRead, ListedObject, Listing, ObjectHead, ObjectRead, ObjectStore, PutOutcome,
    PutRequest, Result, StoreError, StoreStats, WriteCondition,
};

const SIDECAR_SUFFIX: &str = ".meta.json";
const TEMP_MARKER: &str = ".slotfill-tmp-";

pub struct LocalStore {
    location: String,
    root: PathBuf,
    stats: StoreStats,
}

impl LocalStore {
    pub fn new(location: &str, root: &Path) -> LocalStore {
        LocalStore {
            location: location.to_string(),
            root: root.to_path_buf(),
            stats: StoreStats::default(),
        }
    }

    fn io_error(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            location: self.location.clone(),
            key: key.to_string(),
            message: e.to_string(),
        }
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

fn sidecar_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(SIDECAR_SUFFIX);
    PathBuf::from(name)
}

fn describe(meta: &std::fs::Metadata) -> (u64, Option<String>, Option<String>) {
    let modified = meta.modified().ok();
    let nanos = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let last_modified =
        modified.map(|m| crate::clock::timestamp_text(chrono::DateTime::<chrono::Utc>::from(m)));
    (
        meta.len(),
        Some(format!("\"{:x}-{nanos:x}\"", meta.len())),
        last_modified,
    )
}

fn read_sidecar(path: &Path) -> HashMap<String, String> {
    std::fs::read(sidecar_of(path))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Recursively collects files under `dir` whose key (relative to `root`) starts with `prefix`.
fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<ListedObject>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let Some(key) = path
            .strip_prefix(root)
            .ok()
            .and_then(|k| k.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            let as_dir = format!("{key}/");
            if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                walk(root, &path, prefix, out)?;
            }
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !key.starts_with(prefix) || name.ends_with(SIDECAR_SUFFIX) || name.contains(TEMP_MARKER)
        {
            continue;
        }
        let (size, etag, last_modified) = describe(&entry.metadata()?);
        out.push(ListedObject {
            key,
            size,
            etag,
            last_modified,
        });
    }
    Ok(())
}

/// Copies `source` next to `dest` under a temporary name and fsyncs it.
fn stage(source: &Path, dest: &Path) -> std::io::Result<PathBuf> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let temp = dir.join(format!("{name}{TEMP_MARKER}{:08x}", rand::random::<u32>()));
    std::fs::copy(source, &temp)?;
    std::fs::File::open(&temp)?.sync_all()?;
    Ok(temp)
}

fn write_sidecar(dest: &Path, metadata: &[(String, String)]) -> std::io::Result<()> {
    let map: HashMap<&str, &str> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let sidecar = sidecar_of(dest);
    let temp = PathBuf::from(format!(
        "{}{TEMP_MARKER}{:08x}",
        sidecar.display(),
        rand::random::<u32>()
    ));
    std::fs::write(
        &temp,
        serde_json::to_vec_pretty(&map).expect("string map serializes"),
    )?;
    std::fs::File::open(&temp)?.sync_all()?;
    std::fs::rename(&temp, &sidecar)
}

fn put_blocking(source: &Path, dest: &Path, request: &PutRequest) -> std::io::Result<PutOutcome> {
    let replace = match &request.condition {
        WriteCondition::IfAbsent if dest.exists() => return Ok(PutOutcome::AlreadyExists),
        WriteCondition::IfAbsent => false,
        // Checked, then replaced: not atomic against another writer of the same
        // directory, which a local location does not have to guard against.
        WriteCondition::IfMatch(expected) => match std::fs::metadata(dest) {
            Ok(meta) if describe(&meta).1.as_deref() == Some(expected.as_str()) => true,
            Ok(_) => return Ok(PutOutcome::AlreadyExists),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PutOutcome::AlreadyExists);
            }
            Err(e) => return Err(e),
        },
        WriteCondition::Always => true,
    };
    let temp = stage(source, dest)?;
    // Metadata first: a sidecar without its object is ignored by listings.
    write_sidecar(dest, &request.metadata)?;
    let placed = if replace {
        std::fs::rename(&temp, dest).map(|_| true)
    } else {
        // A hard link never replaces an existing file: the local If-None-Match.
        let linked = match std::fs::hard_link(&temp, dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&temp);
        linked
    }?;
    if let Some(dir) = dest.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    if !placed {
        return Ok(PutOutcome::AlreadyExists);
    }
    let (_, etag, _) = describe(&std::fs::metadata(dest)?);
    Ok(PutOutcome::Created { etag })
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn location(&self) -> &str {
        &self.location
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        StoreStats::bump(&self.stats.lists, 1);
        let root = self.root.clone();
        let owned_prefix = prefix.to_string();
        let objects = tokio::task::spawn_blocking(move || {
            let start_dir = match owned_prefix.rfind('/') {
                Some(i) => root.join(&owned_prefix[..i]),
                None => root.clone(),
            };
            let mut out = Vec::new();
            walk(&root, &start_dir, &owned_prefix, &mut out).map(|_| out)
        })
        .await
        .expect("listing task panicked")
        .map_err(|e| self.io_error(prefix, e))?;
        Ok(Listing { objects, pages: 1 })
    }

    async fn read(&self, key: &str) -> Result<ObjectRead> {
        StoreStats::bump(&self.stats.gets, 1);
        let path = self.path_of(key);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| self.io_error(key, e))?;
        let metadata = tokio::task::spawn_blocking(move || read_sidecar(&path))
            .await
            .expect("sidecar task panicked");
        Ok(ObjectRead {
            metadata,
            body: Box::new(file),
        })
    }

    /// Counted on a blocking thread with plain reads: tokio's file reads hop to
    /// a blocking thread and back for every buffer, which halved the speed of
    /// page-cached files.
    async fn count(&self, key: &str, cap: Option<u64>) -> Result<CountedRead> {
        StoreStats::bump(&self.stats.gets, 1);
        let path = self.path_of(key);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            let count = count_reader(file, cap)?;
            Ok::<_, std::io::Error>(CountedRead {
                count,
                metadata: read_sidecar(&path),
            })
        })
        .await
        .expect("counting task panicked")
        .map_err(|e| self.io_error(key, e))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>> {
        StoreStats::bump(&self.stats.heads, 1);
        let path = self.path_of(key);
        match std::fs::metadata(&path) {
            Ok(meta) => {
                let (size, etag, last_modified) = describe(&meta);
                Ok(Some(ObjectHead {
                    size,
                    etag,
                    last_modified,
                    metadata: read_sidecar(&path),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error(key, e)),
        }
    }

    async fn put_file(&self, key: &str, path: &Path, request: &PutRequest) -> Result<PutOutcome> {
        StoreStats::bump(&self.stats.puts, 1);
        let (source, dest, request_owned) =
            (path.to_path_buf(), self.path_of(key), request.clone());
        tokio::task::spawn_blocking(move || put_blocking(&source, &dest, &request_owned))
            .await
            .expect("put task panicked")
            .map_err(|e| self.io_error(key, e))
    }

    /// Creates the directory if needed, then a temporary file in it (removed at once).
    async fn check_writable(&self) -> Result<()> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&root)?;
            // Named like a staged file: one left behind by a kill is never listed.
            tempfile::Builder::new()
                .prefix(&format!(".write-probe{TEMP_MARKER}"))
                .tempfile_in(&root)
                .map(drop)
        })
        .await
        .expect("check task panicked")
        .map_err(|e| self.io_error("", format!("cannot write here: {e}")))
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_reads_and_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new("file:///x", dir.path());
        let source = dir.path().join("source");
        std::fs::write(&source, b"a\nb\n").unwrap();
        let request = PutRequest {
            content_type: "application/x-ndjson".into(),
            metadata: vec![("complete".into(), "true".into())],
            condition: WriteCondition::IfAbsent,
        };
        let key = "2025/08/01/00/2025-08-01_00-40.jsonl";
        assert!(matches!(
            store.put_file(key, &source, &request).await.unwrap(),
            PutOutcome::Created { .. }
        ));
        std::fs::write(&source, b"changed\n").unwrap();
        assert_eq!(
            store.put_file(key, &source, &request).await.unwrap(),
            PutOutcome::AlreadyExists
        );
        let listing = store.list("2025/08/01/").await.unwrap();
        assert_eq!(
            listing.objects.len(),
            1,
            "sidecars and temp files are not objects"
        );
        assert_eq!(listing.objects[0].key, key);
        assert_eq!(listing.objects[0].size, 4);
        assert!(store.list("2025/08/02/").await.unwrap().objects.is_empty());
        let read = store.read(key).await.unwrap();
        assert_eq!(
            read.metadata.get("complete").map(String::as_str),
            Some("true")
        );
        // If-Match replaces only the object it names.
        let head = store.head(key).await.unwrap().unwrap();
        let stale = PutRequest {
            condition: WriteCondition::IfMatch("\"0-0\"".into()),
            ..request.clone()
        };
        assert_eq!(
            store.put_file(key, &source, &stale).await.unwrap(),
            PutOutcome::AlreadyExists
        );
        let current = PutRequest {
            condition: WriteCondition::IfMatch(head.etag.unwrap()),
            ..request.clone()
        };
        assert!(matches!(
            store.put_file(key, &source, &current).await.unwrap(),
            PutOutcome::Created { .. }
        ));
        assert_eq!(store.head(key).await.unwrap().unwrap().size, 8);
        let overwrite = PutRequest {
            condition: WriteCondition::Always,
            ..request
        };
        store.put_file(key, &source, &overwrite).await.unwrap();
        assert_eq!(store.head(key).await.unwrap().unwrap().size, 8);
        assert!(store.head("nope").await.unwrap().is_none());
    }
}
