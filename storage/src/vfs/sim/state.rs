//! The simulated file system's state: inodes with their durable content and the writes since
//! their last fsync, and directories with their durable entries and the entry changes since
//! their last fsync.
//!
//! Invariants:
//! - `Inode::current` is `durable` with every op of `pending` applied in order: reads see
//!   `current` (the page cache), a crash keeps `durable` plus some of `pending`.
//! - `Dir::entries` is `durable` with every op of `pending` applied in order. A crash applies a
//!   prefix of `pending` (the journal commits a directory's changes in order).
//! - Paths are absolute and normal (no `.`/`..`); `/` always exists and is durable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Component, Path, PathBuf};

/// One change to a file's bytes that no fsync has covered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOp {
    Write { at: u64, data: Vec<u8> },
    SetLen(u64),
}

impl DataOp {
    pub fn apply(&self, content: &mut Vec<u8>) {
        match self {
            DataOp::Write { at, data } => write_at(content, *at, data),
            DataOp::SetLen(len) => content.resize(*len as usize, 0),
        }
    }
}

/// Writes `data` at `at`, zero-filling any gap past the end.
pub fn write_at(content: &mut Vec<u8>, at: u64, data: &[u8]) {
    let at = at as usize;
    let end = at + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[at..end].copy_from_slice(data);
}

#[derive(Debug, Clone, Default)]
pub struct Inode {
    pub durable: Vec<u8>,
    pub current: Vec<u8>,
    pub pending: Vec<DataOp>,
}

impl Inode {
    pub fn push(&mut self, op: DataOp) {
        op.apply(&mut self.current);
        self.pending.push(op);
    }

    /// An fsync that succeeded: everything written is durable.
    pub fn sync(&mut self) {
        for op in self.pending.drain(..) {
            op.apply(&mut self.durable);
        }
    }
}

/// What a directory entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    File(u64),
    Dir,
}

/// One change to a directory's entries that no directory fsync has covered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirOp {
    Link(String, Node),
    Unlink(String),
    Rename(String, String),
}

impl DirOp {
    pub fn apply(&self, entries: &mut BTreeMap<String, Node>) {
        match self {
            DirOp::Link(name, node) => {
                entries.insert(name.clone(), *node);
            }
            DirOp::Unlink(name) => {
                entries.remove(name);
            }
            DirOp::Rename(from, to) => {
                if let Some(node) = entries.remove(from) {
                    entries.insert(to.clone(), node);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Dir {
    pub entries: BTreeMap<String, Node>,
    pub durable: BTreeMap<String, Node>,
    pub pending: Vec<DirOp>,
}

impl Dir {
    pub fn push(&mut self, op: DirOp) {
        op.apply(&mut self.entries);
        self.pending.push(op);
    }
}

/// The whole file system.
#[derive(Debug, Clone)]
pub struct State {
    pub inodes: HashMap<u64, Inode>,
    pub next_ino: u64,
    pub dirs: BTreeMap<PathBuf, Dir>,
    pub locks: HashSet<PathBuf>,
}

impl Default for State {
    fn default() -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::from("/"), Dir::default());
        Self { inodes: HashMap::new(), next_ino: 1, dirs, locks: HashSet::new() }
    }
}

pub fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

/// `path` made absolute and normal (relative paths are taken from `/`).
pub fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The directory holding `path` and the entry's name.
pub fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let path = normal(path);
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| not_found(&path))?;
    let parent = path.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    Ok((parent, name.to_owned()))
}

impl State {
    pub fn dir(&self, path: &Path) -> io::Result<&Dir> {
        self.dirs.get(&normal(path)).ok_or_else(|| not_found(path))
    }

    pub fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(&normal(path)).ok_or_else(|| not_found(path))
    }

    /// What the entry at `path` names, if anything.
    pub fn lookup(&self, path: &Path) -> io::Result<Option<Node>> {
        let (parent, name) = split(path)?;
        Ok(self.dir(&parent)?.entries.get(&name).copied())
    }

    /// The inode of the file at `path`.
    pub fn file(&self, path: &Path) -> io::Result<u64> {
        match self.lookup(path)? {
            Some(Node::File(ino)) => Ok(ino),
            Some(Node::Dir) => Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory")),
            None => Err(not_found(path)),
        }
    }

    pub fn inode(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(|| io::Error::other("stale inode"))
    }

    /// Links a new empty file at `path`.
    pub fn create(&mut self, path: &Path) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        let ino = self.next_ino;
        self.dir_mut(&parent)?.push(DirOp::Link(name, Node::File(ino)));
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        Ok(ino)
    }

    /// Creates the directories of `path` that are missing; returns them outermost first.
    pub fn create_dir_all(&mut self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let path = normal(path);
        let mut created = Vec::new();
        let mut at = PathBuf::from("/");
        for c in path.components().skip(1) {
            let Component::Normal(name) = c else { continue };
            let name = name.to_str().ok_or_else(|| not_found(&path))?.to_owned();
            let child = at.join(&name);
            match self.dir(&at)?.entries.get(&name) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a file is in the way",
                    ));
                }
                None => {
                    self.dir_mut(&at)?.push(DirOp::Link(name, Node::Dir));
                    self.dirs.insert(child.clone(), Dir::default());
                    created.push(child.clone());
                }
            }
            at = child;
        }
        Ok(created)
    }

    pub fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if from_dir != to_dir {
            return Err(io::Error::new(io::ErrorKind::CrossesDevices, "rename across directories"));
        }
        self.file(from)?;
        self.dir_mut(&from_dir)?.push(DirOp::Rename(from_name, to_name));
        Ok(())
    }

    pub fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.file(path)?;
        let (parent, name) = split(path)?;
        self.dir_mut(&parent)?.push(DirOp::Unlink(name));
        Ok(())
    }
}
