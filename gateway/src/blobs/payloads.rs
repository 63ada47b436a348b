//! The quarantine folder of the store, `quarantine/`: one payload file per egress round
//! (`egress::payload`), named at random. A payload being written is a [`NewPayload`], removed
//! unless kept; once its round is recorded it stays, and when its release is built the same
//! file is linked into the store under the package's SHA-256 ([`BlobStore::link_in`]), so the
//! release costs no copy. At start, a payload no round names is swept with the orphan blobs.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{BlobStore, Reaper};

/// A payload file being written: removed (in the background) unless [`NewPayload::keep`] is
/// called once its round is committed.
pub struct NewPayload {
    pub name: String,
    pub path: PathBuf,
    reaper: Reaper,
    kept: bool,
}

impl NewPayload {
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for NewPayload {
    fn drop(&mut self) {
        if !self.kept {
            self.reaper.remove_soon(std::mem::take(&mut self.path));
        }
    }
}

impl BlobStore {
    fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// A new payload file, created empty (blocking).
    pub fn new_payload(&self) -> anyhow::Result<(NewPayload, std::fs::File)> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.quarantine_dir();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            sync_dir_blocking(&self.root);
        }
        let mut r = [0u8; 12];
        getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let name = format!("p-{}.age", hex::encode(r));
        let path = dir.join(&name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok((
            NewPayload {
                name,
                path,
                reaper: self.reaper.clone(),
                kept: false,
            },
            file,
        ))
    }

    /// Makes the new name of a payload durable (blocking): its folder is fsynced.
    pub fn sync_quarantine(&self) {
        sync_dir_blocking(&self.quarantine_dir());
    }

    /// The path of the payload `name` (as [`BlobStore::new_payload`] names them, nothing else).
    pub fn payload_path(&self, name: &str) -> anyhow::Result<PathBuf> {
        let ok = name.len() == 30
            && name.starts_with("p-")
            && name.ends_with(".age")
            && name[2..26]
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        anyhow::ensure!(ok, "{name:?} is not the name of a payload");
        Ok(self.quarantine_dir().join(name))
    }

    /// The payloads in the folder, with how long ago each was changed.
    pub fn list_payloads(&self) -> anyhow::Result<Vec<(String, std::time::Duration)>> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.quarantine_dir()) else {
            return Ok(out);
        };
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if self.payload_path(&name).is_err() {
                continue;
            }
            let age = e
                .metadata()?
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or_default();
            out.push((name, age));
        }
        Ok(out)
    }

    /// Removes a payload no round names (in the background, a step at a time).
    pub fn remove_payload(&self, name: &str) -> anyhow::Result<()> {
        self.reaper.remove_soon(self.payload_path(name)?);
        Ok(())
    }

    /// Gives the file at `from` (in the store's file system) the name of the blob `sha256`
    /// as well, by a hard link, and makes that name durable (blocking). A blob of that name
    /// already there is left as it is.
    pub fn link_in(&self, from: &Path, sha256: &str) -> anyhow::Result<()> {
        let dest = self.path_of(sha256)?;
        if dest.exists() {
            return Ok(());
        }
        let parent = dest.parent().context("a blob path has a parent")?;
        let base = self.root.join("sha256");
        let new_base = !base.exists();
        let new_fanout = !parent.exists();
        std::fs::create_dir_all(parent)?;
        std::fs::hard_link(from, &dest)
            .with_context(|| format!("linking {} into the store", from.display()))?;
        sync_dir_blocking(parent);
        if new_fanout {
            sync_dir_blocking(&base);
        }
        if new_base {
            sync_dir_blocking(&self.root);
        }
        Ok(())
    }
}

fn sync_dir_blocking(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new payload has a name of its own that `payload_path` takes back, and nothing else
    /// is a payload's name; linked in, it is one file under two names, and linking again
    /// changes nothing.
    #[tokio::test]
    async fn payloads_are_named_kept_and_linked_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(
            dir.path().join("blobs"),
            dir.path().join("tmp"),
            crate::workers::Workers::default(),
        );
        let (p, mut file) = store.new_payload().unwrap();
        std::io::Write::write_all(&mut file, b"sealed bytes").unwrap();
        assert_eq!(store.payload_path(&p.name).unwrap(), p.path);
        for bad in [
            "../p-0123456789abcdef01234567.age",
            "p-0123456789ABCDEF01234567.age",
            "p-0123456789abcdef0123456.age",
            "p-0123456789abcdef012345678.age",
            "x-0123456789abcdef01234567.age",
            "p-0123456789abcdef0123456/.age",
        ] {
            assert!(store.payload_path(bad).is_err(), "{bad}");
        }
        let sha = crate::sha256_hex(b"sealed bytes");
        store.link_in(&p.path, &sha).unwrap();
        store.link_in(&p.path, &sha).unwrap();
        {
            use std::os::unix::fs::MetadataExt;
            let (a, b) = (
                std::fs::metadata(&p.path).unwrap(),
                std::fs::metadata(store.path_of(&sha).unwrap()).unwrap(),
            );
            assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        }
        assert_eq!(store.list().unwrap(), vec![sha]);
        let names: Vec<String> = store
            .list_payloads()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec![p.name.clone()]);
        let path = p.path.clone();
        p.keep();
        assert!(path.exists(), "a kept payload stays");
    }
}
