//! No loss and bounded duplicates under member crashes: 1,000,000 records over 6 partitions
//! are read by a group of member processes that write each record to a file, then commit;
//! members are SIGKILLed at random points of the run and replaced. Afterwards every record
//! was processed at least once, and a record processed twice was first processed by a member
//! that was killed before it had committed past it — nothing else is ever re-delivered.
//!
//! `EDDY_TEST_GROUP_RECORDS` changes the record count, `EDDY_TEST_SEED` the crash points.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_storage::{BatchBuilder, Record};
use eddy_tests::broker::BrokerProcess;
use eddy_tests::env_u64;
use eddy_tests::generate::Rng;
use eddy_tests::members::{Members, describe_group};
use eddy_tests::raw_client::RawClient;

const PARTITIONS: u32 = 6;
const SESSION_MS: u64 = 1500;
const MEMBERS: usize = 3;
const CRASHES: usize = 5;
const PER_BATCH: u64 = 1000;
/// "Processing" time per record in the members: a million records take ~10 s over three, so
/// the crashes land in the middle of the run.
const WORK_US: u64 = 30;

/// What one member incarnation wrote: records processed, and its acknowledged commits.
#[derive(Default)]
struct Journal {
    processed: Vec<(u32, u64)>,
    /// Highest acknowledged commit per partition.
    acked: BTreeMap<u32, u64>,
}

fn read_journal(path: &Path) -> Journal {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut j = Journal::default();
    // A line cut short by SIGKILL has no newline: it was never complete, so never counted.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    for line in complete.lines() {
        let mut words = line.split(' ');
        let (Some(kind), Some(p), Some(o)) = (words.next(), words.next(), words.next()) else {
            panic!("{}: bad line {line:?}", path.display());
        };
        let (p, o): (u32, u64) = (p.parse().unwrap(), o.parse().unwrap());
        match kind {
            "r" => j.processed.push((p, o)),
            "c" => {
                let slot = j.acked.entry(p).or_default();
                *slot = (*slot).max(o);
            }
            _ => panic!("{}: bad line {line:?}", path.display()),
        }
    }
    j
}

fn produce(client: &mut RawClient, records: u64) -> Vec<u64> {
    let mut ends = vec![0u64; PARTITIONS as usize];
    let mut i = 0;
    while i < records {
        let n = PER_BATCH.min(records - i);
        let mut b = BatchBuilder::new();
        for k in 0..n {
            let value = (i + k).to_le_bytes();
            b.push(Record { timestamp: 0, key: None, value: Some(&value), headers: &[] });
        }
        let partition = ((i / PER_BATCH) % u64::from(PARTITIONS)) as u32;
        let (_, last) = client.produce_ok("t", partition, Bytes::from(b.finish()));
        ends[partition as usize] = last + 1;
        i += n;
    }
    ends
}

#[test]
fn crashed_members_redeliver_only_what_they_had_not_committed() {
    let records = env_u64("EDDY_TEST_GROUP_RECORDS").unwrap_or(1_000_000);
    let seed = env_u64("EDDY_TEST_SEED").unwrap_or(0x0edd_5eed);
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[("EDDY_GROUP_MIN_SESSION_TIMEOUT_MS", "200")]);
    let mut client = RawClient::connect(broker.addr());
    client.create_topic("t", PARTITIONS);
    let ends = produce(&mut client, records);
    assert_eq!(ends.iter().sum::<u64>(), records);

    let binary = Path::new(env!("CARGO_BIN_EXE_eddy-group-member"));
    let mut g = Members::new(binary, &broker.addr().to_string(), "g", "t", SESSION_MS);
    let journal = |n: usize| dir.path().join(format!("member-{n}.txt"));
    let deadline = Instant::now() + Duration::from_secs(240);
    for n in 0..MEMBERS {
        g.spawn(Some((&journal(n), WORK_US)), deadline);
    }
    // Crash points: fractions of the run, in order.
    let mut rng = Rng::new(seed);
    let mut points: Vec<u64> =
        (0..CRASHES).map(|_| records / 20 + rng.below(records * 3 / 4)).collect();
    points.sort_unstable();
    let mut crashed: BTreeSet<usize> = BTreeSet::new();
    let progress = |g: &Members| g.all.iter().map(|m| m.committed).sum::<u64>();
    for point in points {
        g.wait_for(deadline, |m| m.iter().map(|m| m.committed).sum::<u64>() >= point);
        let live: Vec<usize> = (0..g.all.len()).filter(|i| !g.all[*i].gone).collect();
        let victim = live[rng.below(live.len() as u64) as usize];
        g.kill(victim);
        crashed.insert(victim);
        let n = g.all.len();
        g.spawn(Some((&journal(n), WORK_US)), deadline);
        eprintln!("killed member {victim} at {} processed; started member {n}", progress(&g));
    }
    // Done when the group has committed the end of every partition.
    loop {
        let seen = progress(&g);
        let d = describe_group(&mut client, "g");
        let lag: u64 = d.offsets.iter().map(|o| o.lag).sum();
        if lag == 0 && d.offsets.len() == PARTITIONS as usize {
            break;
        }
        let moved = g.try_wait_for(deadline, |m| m.iter().map(|m| m.committed).sum::<u64>() > seen);
        assert!(moved, "the group stopped making progress at lag {lag}: {d:#?}");
    }
    for i in 0..g.all.len() {
        g.kill(i);
    }

    // Every record processed; re-deliveries only past a killed member's last commit.
    let journals: Vec<(usize, Journal)> =
        (0..g.all.len()).map(|n| (n, read_journal(&journal(n)))).collect::<Vec<_>>();
    let mut by_record: BTreeMap<(u32, u64), Vec<usize>> = BTreeMap::new();
    for (n, j) in &journals {
        for &(p, o) in &j.processed {
            by_record.entry((p, o)).or_default().push(*n);
        }
    }
    let mut duplicates = 0u64;
    for (p, &end) in ends.iter().enumerate() {
        for o in 0..end {
            let who = by_record
                .get(&(p as u32, o))
                .unwrap_or_else(|| panic!("record {p}/{o} was never processed"));
            let distinct: BTreeSet<usize> = who.iter().copied().collect();
            assert_eq!(distinct.len(), who.len(), "{p}/{o} processed twice by one member: {who:?}");
            // A processing is "settled" when its member committed past the record or was never
            // killed (it commits what it processes before giving a partition up). At most one
            // processing of a record may be settled: every other one was by a member killed
            // before it committed the record — a re-delivery after its last commit.
            let settled: Vec<usize> = who
                .iter()
                .copied()
                .filter(|&n| {
                    let acked = journals[n].1.acked.get(&(p as u32)).copied().unwrap_or(0);
                    !crashed.contains(&n) || o < acked
                })
                .collect();
            assert!(
                settled.len() <= 1,
                "{p}/{o} processed by {who:?}; members {settled:?} each committed it or were never killed"
            );
            duplicates += who.len() as u64 - 1;
        }
    }
    let processed: usize = journals.iter().map(|(_, j)| j.processed.len()).sum();
    assert_eq!(processed as u64, records + duplicates);
    eprintln!("{records} records, {duplicates} re-delivered after {} crashes", crashed.len());
}
