//! Consumer group members as processes (`eddy-group-member`), watched through the lines they
//! print, and the raw group calls the group tests make.
//!
//! [`Members::wait_for`] reads every member's output — each read waits on the member's next
//! line, with a short deadline so one quiet member cannot hold up the others — until a
//! condition over their assignments holds or the overall deadline passes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eddy_protocol::v1::{self, request, response};

use crate::child::ChildProcess;
use crate::raw_client::RawClient;

/// What one member process has said so far.
#[derive(Debug)]
pub struct Member {
    pub child: ChildProcess,
    /// Its member id (after `joined`).
    pub id: String,
    /// Partitions it owns now.
    pub owned: BTreeSet<u32>,
    /// Every partition it was asked to give up, in order (cleared by [`Members::clear_logs`]).
    pub revoked: Vec<u32>,
    /// Partitions taken from it without a hand-over.
    pub lost: Vec<u32>,
    /// Records processed at its last acknowledged commit.
    pub committed: u64,
    /// It printed `left` (after SIGTERM).
    pub left: bool,
    /// Its stdout closed.
    pub gone: bool,
    /// Its output file, if it processes records.
    pub out: Option<PathBuf>,
}

impl Member {
    fn apply(&mut self, line: &str) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let parts =
            || rest.split(',').filter(|s| !s.is_empty()).filter_map(|p| p.parse::<u32>().ok());
        match word {
            "joined" => self.id = rest.to_string(),
            "assigned" => self.owned.extend(parts()),
            "revoked" => {
                for p in parts() {
                    self.owned.remove(&p);
                    self.revoked.push(p);
                }
            }
            "lost" => {
                for p in parts() {
                    self.owned.remove(&p);
                    self.lost.push(p);
                }
            }
            "committed" => self.committed = rest.parse().unwrap_or(self.committed),
            "left" => self.left = true,
            "error" => panic!("member {} failed: {rest}", self.child.id()),
            _ => {}
        }
    }

    /// Sends a signal (SIGSTOP, SIGCONT, SIGTERM) to the member, which must not have exited.
    pub fn signal(&self, signal: libc::c_int) {
        assert!(!self.child.has_exited(), "member {} was reaped", self.child.id());
        crate::broker::signal(self.child.id(), signal)
            .unwrap_or_else(|e| panic!("signal {signal} to {}: {e}", self.child.id()));
    }
}

/// A set of member processes of one group.
#[derive(Debug)]
pub struct Members {
    binary: PathBuf,
    broker: String,
    group: String,
    topic: String,
    session_ms: u64,
    pub all: Vec<Member>,
}

impl Members {
    pub fn new(binary: &Path, broker: &str, group: &str, topic: &str, session_ms: u64) -> Self {
        Members {
            binary: binary.to_path_buf(),
            broker: broker.to_string(),
            group: group.to_string(),
            topic: topic.to_string(),
            session_ms,
            all: Vec::new(),
        }
    }

    /// Starts a member (writing processed records to `out`, if given, spending `work_us` per
    /// record) and waits until it has joined. Returns its index.
    pub fn spawn(&mut self, out: Option<(&Path, u64)>, deadline: Instant) -> usize {
        let mut args = vec![
            self.broker.clone(),
            self.group.clone(),
            self.topic.clone(),
            self.session_ms.to_string(),
        ];
        if let Some((out, work_us)) = out {
            args.push(out.display().to_string());
            args.push(work_us.to_string());
        }
        let child = ChildProcess::spawn(&self.binary, &args)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.all.push(Member {
            child,
            id: String::new(),
            owned: BTreeSet::new(),
            revoked: Vec::new(),
            lost: Vec::new(),
            committed: 0,
            left: false,
            gone: false,
            out: out.map(|(path, _)| path.to_path_buf()),
        });
        let i = self.all.len() - 1;
        self.wait_for(deadline, |m| !m[i].id.is_empty());
        i
    }

    /// Reads what members printed until `done` holds; panics at `deadline`.
    pub fn wait_for(&mut self, deadline: Instant, done: impl FnMut(&[Member]) -> bool) {
        assert!(
            self.try_wait_for(deadline, done),
            "condition not reached in time; members: {:#?}",
            self.all.iter().map(|m| (&m.id, &m.owned, m.gone)).collect::<Vec<_>>()
        );
    }

    /// Reads what members printed until `done` holds (`true`) or `deadline` passes (`false`).
    pub fn try_wait_for(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&[Member]) -> bool,
    ) -> bool {
        loop {
            if done(&self.all) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// One round: takes every line each member has printed, waiting up to `slice` on each.
    fn pump(&mut self, slice: Duration) {
        for m in self.all.iter_mut().filter(|m| !m.gone) {
            let until = Instant::now() + slice;
            loop {
                match m.child.next_line(until) {
                    Ok(Some(line)) => m.apply(&line),
                    Ok(None) => {
                        m.gone = true;
                        break;
                    }
                    Err(_) => break,
                }
                if Instant::now() >= until {
                    break;
                }
            }
        }
    }

    /// Forgets the revocation and loss logs.
    pub fn clear_logs(&mut self) {
        for m in &mut self.all {
            m.revoked.clear();
            m.lost.clear();
        }
    }

    /// Kills a member with SIGKILL and marks it gone.
    pub fn kill(&mut self, i: usize) {
        let _ = self.all[i].child.kill();
        self.all[i].gone = true;
    }
}

/// Partition sets of the members at `indexes`: (sizes sorted, union, any overlap).
pub fn coverage(members: &[Member], indexes: &[usize]) -> (Vec<usize>, BTreeSet<u32>, bool) {
    let mut sizes: Vec<usize> = indexes.iter().map(|&i| members[i].owned.len()).collect();
    sizes.sort_unstable();
    let mut union = BTreeSet::new();
    let mut overlap = false;
    for &i in indexes {
        for p in &members[i].owned {
            overlap |= !union.insert(*p);
        }
    }
    (sizes, union, overlap)
}

/// `describe_group` over a raw connection.
pub fn describe_group(client: &mut RawClient, group: &str) -> v1::DescribeGroupResponse {
    let body = request::Body::DescribeGroup(v1::DescribeGroupRequest { group_id: group.into() });
    match client.call_ok(body) {
        response::Body::DescribeGroup(d) => d,
        other => panic!("unexpected answer {other:?}"),
    }
}
