//! What a power loss leaves: the crash image of a simulated file system.
//!
//! For every directory a prefix of its un-fsynced entry changes survives (none, all, or some);
//! what the surviving entries reach from `/` is the new tree, so a directory whose own entry
//! was lost takes its whole content with it. For every file reached, its un-fsynced writes are
//! treated one of four ways, chosen per file:
//! - **dropped**: only what the last successful fsync covered;
//! - **kept**: everything written (the kernel wrote it back in time);
//! - **torn**: the writes up to some point, then some of the next write's sectors;
//! - **reordered**: each write's sectors independently kept or lost, the survivors applied in
//!   order (a later write can survive an earlier one; a gap reads as zeros).
//!
//! Sectors are [`SECTOR`] bytes at aligned file positions: no write survives partly inside one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::rng::SimRng;
use super::state::{DataOp, Dir, Inode, Node, State, write_at};

/// The unit a disk writes atomically.
pub const SECTOR: u64 = 512;

/// How one file's unsynced writes fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFate {
    Dropped,
    Kept,
    Torn,
    Reordered,
}

/// Counts of what a crash did, for the checker's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashReport {
    pub files_dropped: u32,
    pub files_kept: u32,
    pub files_torn: u32,
    pub files_reordered: u32,
    pub dir_ops_lost: u32,
}

/// The state a power loss at this instant leaves, chosen by `rng`.
pub fn image(state: &State, rng: &mut SimRng) -> (State, CrashReport) {
    let mut report = CrashReport::default();
    let survived: BTreeMap<PathBuf, BTreeMap<String, Node>> = state
        .dirs
        .iter()
        .map(|(path, dir)| {
            let (entries, lost) = surviving_entries(dir, rng);
            report.dir_ops_lost += lost;
            (path.clone(), entries)
        })
        .collect();
    let mut out = State { next_ino: state.next_ino, ..State::default() };
    let mut stack = vec![PathBuf::from("/")];
    let mut files = Vec::new();
    while let Some(path) = stack.pop() {
        let Some(entries) = survived.get(&path) else { continue };
        for (name, node) in entries {
            match node {
                Node::Dir => stack.push(path.join(name)),
                Node::File(ino) => files.push(*ino),
            }
        }
        out.dirs.insert(
            path,
            Dir { entries: entries.clone(), durable: entries.clone(), pending: Vec::new() },
        );
    }
    files.sort_unstable();
    files.dedup();
    for ino in files {
        let Some(inode) = state.inodes.get(&ino) else { continue };
        let (content, fate) = surviving_content(inode, rng);
        match fate {
            FileFate::Dropped => report.files_dropped += 1,
            FileFate::Kept => report.files_kept += 1,
            FileFate::Torn => report.files_torn += 1,
            FileFate::Reordered => report.files_reordered += 1,
        }
        out.inodes
            .insert(ino, Inode { durable: content.clone(), current: content, pending: Vec::new() });
    }
    (out, report)
}

/// The entries a directory has after the crash, and how many of its changes were lost.
fn surviving_entries(dir: &Dir, rng: &mut SimRng) -> (BTreeMap<String, Node>, u32) {
    let n = dir.pending.len() as u64;
    let kept = match rng.below(4) {
        0 => 0,
        1 => n,
        _ => rng.between(0, n),
    };
    let mut entries = dir.durable.clone();
    for op in &dir.pending[..kept as usize] {
        op.apply(&mut entries);
    }
    (entries, (n - kept) as u32)
}

/// A file's content after the crash.
fn surviving_content(inode: &Inode, rng: &mut SimRng) -> (Vec<u8>, FileFate) {
    let mut content = inode.durable.clone();
    if inode.pending.is_empty() {
        return (content, FileFate::Kept);
    }
    let fate = match rng.below(4) {
        0 => FileFate::Dropped,
        1 => FileFate::Kept,
        2 => FileFate::Torn,
        _ => FileFate::Reordered,
    };
    match fate {
        FileFate::Dropped => {}
        FileFate::Kept => content.clone_from(&inode.current),
        FileFate::Torn => {
            let whole = rng.below(inode.pending.len() as u64) as usize;
            for op in &inode.pending[..whole] {
                op.apply(&mut content);
            }
            apply_some_sectors(&inode.pending[whole], &mut content, rng);
        }
        FileFate::Reordered => {
            for op in &inode.pending {
                if rng.chance(1, 2) {
                    apply_some_sectors(op, &mut content, rng);
                }
            }
        }
    }
    (content, fate)
}

/// Applies `op` partly: a length change whole or not at all, a write sector by sector.
fn apply_some_sectors(op: &DataOp, content: &mut Vec<u8>, rng: &mut SimRng) {
    match op {
        DataOp::SetLen(_) => {
            if rng.chance(1, 2) {
                op.apply(content);
            }
        }
        DataOp::Write { at, data } => {
            let end = at + data.len() as u64;
            let mut from = *at;
            while from < end {
                let to = ((from / SECTOR + 1) * SECTOR).min(end);
                if rng.chance(1, 2) {
                    let piece = &data[(from - at) as usize..(to - at) as usize];
                    write_at(content, from, piece);
                }
                from = to;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_writes_keep_whole_sectors_only() {
        let mut inode = Inode::default();
        inode.push(DataOp::Write { at: 0, data: vec![7u8; 2000] });
        for seed in 0..200 {
            let (content, _) = surviving_content(&inode, &mut SimRng::new(seed));
            // Every sector is all 7s or all zeros (or absent).
            for (i, sector) in content.chunks(SECTOR as usize).enumerate() {
                let first = sector[0];
                assert!(sector.iter().all(|&b| b == first), "seed {seed} sector {i} mixed");
            }
        }
    }

    #[test]
    fn synced_content_always_survives() {
        let mut inode = Inode::default();
        inode.push(DataOp::Write { at: 0, data: vec![1u8; 700] });
        inode.sync();
        inode.push(DataOp::Write { at: 700, data: vec![2u8; 700] });
        for seed in 0..200 {
            let (content, _) = surviving_content(&inode, &mut SimRng::new(seed));
            assert!(content.len() >= 700);
            assert!(content[..700].iter().all(|&b| b == 1), "seed {seed}");
        }
    }
}
