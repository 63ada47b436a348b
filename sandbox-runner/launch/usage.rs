//! The bytes a folder holds, for its quota. Shared by the backend (walking a sandbox's volume on
//! the engine's host) and the launcher's `--usage` mode (walking it inside a measuring
//! container, where the host's path cannot be read). It uses the standard library only: the
//! launcher is built without crates.
//!
//! The walk is the run's adversary's to shape, so it trusts nothing below the root:
//! - it goes from descriptor to descriptor, never by path: a directory is opened by its name
//!   relative to its parent's descriptor (through `/proc/self/fd/N/name`, std having no
//!   `openat`) with `O_NOFOLLOW | O_DIRECTORY`, and every entry is `fstatat`ed relative to its
//!   directory without following links (`DirEntry::metadata`). So no depth of path is too long,
//!   no link is followed, and a directory swapped for a link or a FIFO is not entered;
//! - a file counts its apparent size or its blocks, whichever is more (a sparse file cannot
//!   hide its size, preallocated blocks cannot hide theirs), and a file with several links
//!   counts once (by device and inode);
//! - what it cannot measure (a directory it may not open or read, a tree deeper than
//!   [`MAX_DEPTH`], more entries than [`MAX_ENTRIES`] or more files of several links than
//!   [`MAX_LINKED`]) makes the whole folder [`Usage::Unmeasurable`], which counts against the
//!   run: past any quota. What vanishes while it walks is passed over;
//! - it holds at most [`OPEN_DIRS`] directories open (two descriptors each) whatever the depth:
//!   deeper, the shallowest open one is closed and later opened again by name from its
//!   parent, and read on past the entries it had already given.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{File, OpenOptions, ReadDir};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a folder holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usage {
    Bytes(u64),
    /// Something below the root could not be measured (why, and where): past any quota.
    Unmeasurable(String),
}

/// Directories deeper than this below the root are not walked: the folder is unmeasurable.
/// Far beyond any real tree (and far beyond `PATH_MAX`, which does not limit the walk); it
/// bounds the time a walk can be made to take (reopening a directory costs its depth).
pub(crate) const MAX_DEPTH: usize = 2048;

/// Directories the walk holds open at once, below the root.
pub(crate) const OPEN_DIRS: usize = 16;

/// Entries a walk goes through at most (some seconds of work); more make the folder
/// unmeasurable, so that the time a measurement takes stays bounded.
pub(crate) const MAX_ENTRIES: u64 = 10_000_000;

/// Files with several links a walk remembers at most (to count each once); more make the folder
/// unmeasurable, so that its memory stays bounded (a measuring container has 32 MiB).
pub(crate) const MAX_LINKED: usize = 200_000;

// Linux's open flags, which differ by architecture (std has no `O_DIRECTORY` of its own).
const ARM_OR_POWER: bool = cfg!(any(
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
));
const O_DIRECTORY: i32 = if ARM_OR_POWER { 0o40000 } else { 0o200000 };
const O_NOFOLLOW: i32 = if ARM_OR_POWER { 0o100000 } else { 0o400000 };

const ENOENT: i32 = 2;
const ENOTDIR: i32 = 20;
const ELOOP: i32 = 40;

/// An open directory: its descriptor (to open what is in it) and its entries.
struct Open {
    dir: File,
    /// `None` until it is read (a directory opened again on the way down is not read yet).
    entries: Option<ReadDir>,
}

/// A directory on the walk's path from the root.
struct Frame {
    /// Its name in its parent (empty for the root).
    name: OsString,
    /// How many of its entries were taken already (to read on after it is opened again).
    taken: u64,
    open: Option<Open>,
}

/// Opens `name`, a directory in `parent`, without following a link.
fn open_in(parent: &File, name: &OsString) -> io::Result<File> {
    let path = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
    open_dir(&path)
}

fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(O_DIRECTORY | O_NOFOLLOW)
        .open(path)
}

/// The entries of an open directory, from their start.
fn entries_of(dir: &File) -> io::Result<ReadDir> {
    std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

fn vanished(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ENOENT)
}

/// The folder's usage. `Err` when the root itself cannot be read (a silent 0 would switch a
/// quota off): that is no fault of the run.
pub(crate) fn usage(root: &Path) -> io::Result<Usage> {
    usage_within(root, MAX_ENTRIES, MAX_LINKED)
}

fn usage_within(root: &Path, max_entries: u64, max_linked: usize) -> io::Result<Usage> {
    let dir = open_dir(root)?;
    let entries = entries_of(&dir)?;
    let mut walk = Walk {
        frames: vec![Frame {
            name: OsString::new(),
            taken: 0,
            open: Some(Open {
                dir,
                entries: Some(entries),
            }),
        }],
        total: 0,
        linked: HashSet::new(),
        entries: 0,
        max_entries,
        max_linked,
    };
    Ok(match walk.run() {
        Ok(()) => Usage::Bytes(walk.total),
        Err(why) => Usage::Unmeasurable(format!("{why} at {}", walk.where_())),
    })
}

struct Walk {
    frames: Vec<Frame>,
    total: u64,
    /// Files with more than one link, counted once.
    linked: HashSet<(u64, u64)>,
    /// Entries gone through.
    entries: u64,
    max_entries: u64,
    max_linked: usize,
}

impl Walk {
    fn run(&mut self) -> Result<(), String> {
        while let Some(top) = self.frames.last_mut() {
            let open = top.open.as_mut().expect("the top directory is open");
            let entries = match &mut open.entries {
                Some(e) => e,
                None => {
                    // Read on from where it was left.
                    let mut e = match entries_of(&open.dir) {
                        Ok(e) => e,
                        Err(e) => return Err(format!("a folder cannot be read ({e})")),
                    };
                    for _ in 0..top.taken {
                        if e.next().is_none() {
                            break;
                        }
                    }
                    open.entries.insert(e)
                }
            };
            let Some(entry) = entries.next() else {
                self.frames.pop();
                self.reopen_top()?;
                continue;
            };
            top.taken += 1;
            self.entries += 1;
            if self.entries > self.max_entries {
                return Err(format!("more than {} entries", self.max_entries));
            }
            let entry = match entry {
                Ok(e) => e,
                Err(e) if vanished(&e) => continue,
                Err(e) => return Err(format!("a folder cannot be read ({e})")),
            };
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if vanished(&e) => continue,
                Err(e) => {
                    return Err(format!("{:?} cannot be measured ({e})", entry.file_name()));
                }
            };
            if !meta.is_dir() && meta.nlink() > 1 {
                let inode = (meta.dev(), meta.ino());
                if self.linked.contains(&inode) {
                    continue;
                }
                if self.linked.len() >= self.max_linked {
                    return Err(format!(
                        "more than {} files with several links",
                        self.max_linked
                    ));
                }
                self.linked.insert(inode);
            }
            self.total = self
                .total
                .saturating_add(meta.size().max(meta.blocks().saturating_mul(512)));
            if meta.is_dir() {
                self.enter(entry.file_name())?;
            }
        }
        Ok(())
    }

    /// Goes down into `name`, a directory in the top one.
    fn enter(&mut self, name: OsString) -> Result<(), String> {
        if self.frames.len() > MAX_DEPTH {
            return Err(format!("the folder is deeper than {MAX_DEPTH} levels"));
        }
        let top = self.frames.last().expect("a directory is being read");
        let parent = &top.open.as_ref().expect("the top directory is open").dir;
        let dir = match open_in(parent, &name) {
            Ok(d) => d,
            // Gone, or no longer a directory (a link or a file in its place now, counted
            // as what it is at the next measurement).
            Err(e) if vanished(&e) || replaced(&e) => return Ok(()),
            Err(e) => return Err(format!("{name:?} cannot be opened ({e})")),
        };
        self.frames.push(Frame {
            name,
            taken: 0,
            open: Some(Open { dir, entries: None }),
        });
        // The shallowest open directory below the root closes past the bound.
        let open = self.frames[1..].iter().filter(|f| f.open.is_some()).count();
        if open > OPEN_DIRS {
            if let Some(f) = self.frames[1..].iter_mut().find(|f| f.open.is_some()) {
                f.open = None;
            }
        }
        Ok(())
    }

    /// Opens the top directory again when it was closed: each one from its nearest open
    /// ancestor down, by name, keeping the deepest [`OPEN_DIRS`]. One that is gone meanwhile
    /// ends the walk of what is below it.
    fn reopen_top(&mut self) -> Result<(), String> {
        let Some(top) = self.frames.len().checked_sub(1) else {
            return Ok(());
        };
        if self.frames[top].open.is_some() {
            return Ok(());
        }
        let from = (0..top)
            .rev()
            .find(|&i| self.frames[i].open.is_some())
            .expect("the root stays open");
        let keep = top.saturating_sub(OPEN_DIRS - 1).max(1);
        let mut parent: Option<File> = None;
        for i in from + 1..=top {
            let opened = {
                let p = match &parent {
                    Some(p) => p,
                    None => &self.frames[i - 1].open.as_ref().expect("open").dir,
                };
                open_in(p, &self.frames[i].name)
            };
            let dir = match opened {
                Ok(d) => d,
                Err(e) if vanished(&e) || replaced(&e) => {
                    // Gone: so is everything below it that was not read yet.
                    self.frames.truncate(i);
                    return self.reopen_top();
                }
                Err(e) => return Err(format!("a folder cannot be opened again ({e})")),
            };
            if i >= keep {
                let again = dir.try_clone().map_err(|e| format!("{e}"))?;
                self.frames[i].open = Some(Open {
                    dir: again,
                    entries: None,
                });
            }
            parent = Some(dir);
        }
        Ok(())
    }

    /// Where the walk is: the path of the directory it reads, cut to its last 200 bytes.
    fn where_(&self) -> String {
        let mut path = Vec::new();
        for f in &self.frames[1..] {
            path.push(b'/');
            path.extend_from_slice(f.name.as_bytes());
        }
        if path.is_empty() {
            return "/".into();
        }
        let cut = path.len().saturating_sub(200);
        let tail = String::from_utf8_lossy(&path[cut..]).into_owned();
        if cut > 0 { format!("…{tail}") } else { tail }
    }
}

/// Whether opening a directory failed because its name is no directory now: a link (`ELOOP`
/// under `O_NOFOLLOW`) or something else (`ENOTDIR`). The walk follows neither.
fn replaced(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(ELOOP) | Some(ENOTDIR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh directory, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(what: &str) -> Tree {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "vre-usage-{what}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir(&p).unwrap();
            Tree(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A directory made in `parent` by name, open (paths below can be longer than PATH_MAX).
    fn mkdir_in(parent: &File, name: &str) -> File {
        let path = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
        std::fs::create_dir(&path).unwrap();
        open_dir(&path).unwrap()
    }

    /// A sparse file of `len` bytes in `dir`: no blocks, only its apparent size.
    fn sparse_in(dir: &File, name: &str, len: u64) {
        let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        File::create(path).unwrap().set_len(len).unwrap();
    }

    fn dir_size(p: &Path) -> u64 {
        let m = std::fs::symlink_metadata(p).unwrap();
        m.size().max(m.blocks() * 512)
    }

    fn bytes(root: &Path) -> u64 {
        match usage(root).unwrap() {
            Usage::Bytes(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn files_count_their_apparent_size_or_their_blocks_and_links_once() {
        let t = Tree::new("sizes");
        let root = t.path();
        assert_eq!(bytes(root), 0, "the root itself does not count");
        // A sparse file of a terabyte holds no block and counts a terabyte.
        std::fs::File::create(root.join("sparse"))
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        assert_eq!(bytes(root), 1 << 40);
        // A file with blocks beyond its size counts its blocks.
        std::fs::write(root.join("one"), b"x").unwrap();
        let one = dir_size(&root.join("one"));
        assert!(one >= 1);
        assert_eq!(bytes(root), (1 << 40) + one);
        // Hard links: once, wherever they are.
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/linked"), vec![7u8; 10_000]).unwrap();
        let linked = dir_size(&root.join("d/linked"));
        let d = dir_size(&root.join("d"));
        let before = bytes(root);
        assert_eq!(before, (1 << 40) + one + d + linked);
        for n in 0..5 {
            std::fs::hard_link(root.join("d/linked"), root.join(format!("l{n}"))).unwrap();
        }
        std::fs::hard_link(root.join("sparse"), root.join("d/sparse2")).unwrap();
        // Names may take room in their directory, never a second time the file's.
        assert_eq!(bytes(root), before - d + dir_size(&root.join("d")));
    }

    #[test]
    fn links_are_never_followed() {
        let t = Tree::new("links");
        let outside = Tree::new("outside");
        std::fs::File::create(outside.path().join("huge"))
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        let root = t.path();
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("huge"), root.join("huge")).unwrap();
        // A loop, and a link to the folder itself.
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::os::unix::fs::symlink("..", root.join("d/up")).unwrap();
        std::os::unix::fs::symlink(root, root.join("d/self")).unwrap();
        let links: u64 = ["out", "huge", "loop", "d/up", "d/self"]
            .iter()
            .map(|l| dir_size(&root.join(l)))
            .sum();
        assert_eq!(bytes(root), links + dir_size(&root.join("d")));
        // A root that is itself a link is refused, not followed.
        assert!(usage(&root.join("out")).is_err());
        assert!(usage(&root.join("missing")).is_err());
    }

    #[test]
    fn paths_longer_than_path_max_are_measured() {
        let t = Tree::new("long");
        let mut dir = open_dir(t.path()).unwrap();
        let name = "n".repeat(250);
        for level in 0..20 {
            dir = mkdir_in(&dir, &name);
            sparse_in(&dir, "f", 1000 + level);
        }
        // 20 × 251 bytes of path: past PATH_MAX (4096).
        sparse_in(&dir, "big", 3 << 30);
        let dirs: u64 = 20 * std::fs::metadata(t.path()).unwrap().size();
        let files: u64 = (0..20).map(|l| 1000 + l).sum::<u64>() + (3 << 30);
        assert_eq!(bytes(t.path()), dirs + files);
    }

    #[test]
    fn a_tree_deeper_than_the_open_directories_is_measured_whole() {
        let t = Tree::new("deep");
        let mut dir = open_dir(t.path()).unwrap();
        let mut expected = 0;
        let depth = OPEN_DIRS as u64 * 5 + 3;
        for level in 0..depth {
            // Files and a side folder around the way down, read before and after it.
            for f in ["a", "m", "z"] {
                sparse_in(&dir, f, level * 10 + 1);
                expected += level * 10 + 1;
            }
            let side = mkdir_in(&dir, "side");
            sparse_in(&side, "s", 7);
            expected += 7 + side.metadata().unwrap().size();
            dir = mkdir_in(&dir, "c");
            expected += dir.metadata().unwrap().size();
        }
        assert_eq!(bytes(t.path()), expected);
    }

    #[test]
    fn a_tree_too_deep_to_walk_is_unmeasurable() {
        let t = Tree::new("too-deep");
        let mut dir = open_dir(t.path()).unwrap();
        for _ in 0..=MAX_DEPTH {
            dir = mkdir_in(&dir, "d");
        }
        match usage(t.path()).unwrap() {
            Usage::Unmeasurable(why) => assert!(why.contains("deeper than"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// A directory the walker may not open makes the folder unmeasurable, not smaller. Run
    /// through the launcher as `nobody` when the tests run as root (who may open anything).
    #[test]
    fn what_cannot_be_opened_counts_against_the_folder() {
        let t = Tree::new("denied");
        let root = t.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(root.join("a/hidden")).unwrap();
        std::fs::File::create(root.join("a/hidden/big"))
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        std::fs::set_permissions(
            root.join("a/hidden"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        let launcher = concat!(env!("OUT_DIR"), "/vre-launch");
        let mut cmd = std::process::Command::new(launcher);
        cmd.arg("--usage").arg(root);
        if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
            use std::os::unix::process::CommandExt;
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().unwrap();
        std::fs::set_permissions(
            root.join("a/hidden"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(
            said.starts_with("unmeasurable: \"hidden\" cannot be opened") && said.contains("at /a"),
            "{said}"
        );
    }

    #[test]
    fn a_walk_past_its_bounds_is_unmeasurable() {
        let t = Tree::new("bounds");
        let root = t.path();
        for n in 0..10 {
            std::fs::write(root.join(format!("f{n}")), b"x").unwrap();
            std::fs::hard_link(root.join(format!("f{n}")), root.join(format!("l{n}"))).unwrap();
        }
        assert!(matches!(
            usage_within(root, 20, 10).unwrap(),
            Usage::Bytes(_)
        ));
        let unmeasurable = |entries, linked| match usage_within(root, entries, linked).unwrap() {
            Usage::Unmeasurable(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(unmeasurable(19, 10).contains("more than 19 entries"));
        assert!(unmeasurable(20, 9).contains("more than 9 files with several links"));
    }
}
