//! Stream–table join (orders enriched with the latest customer record) and a windowed
//! stream–stream join (orders with their payments), each against an expected result computed
//! here from the raw input, including out-of-order and late records.
//!
//! The expected results follow docs/processors.md: a task merges its co-partitioned sources by
//! (timestamp, source index), each source in offset order; a table lookup sees the table as it
//! is at that point of the merge; a stream–stream pair matches when both records are on time
//! (not below max timestamp seen − grace at arrival) and within the join window.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::Rng;
use eddy_processor::{
    JoinWindow, Json, LogAccess, ProcessorBuilder, TaskConfig, Utf8, partition_for_key,
};
use serde::{Deserialize, Serialize};

const PARTITIONS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Customer {
    name: String,
    tier: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    amount: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Enriched {
    order: u64,
    customer: Option<String>,
    tier: Option<u32>,
}

/// One input event: (source index in declaration order, key, ts, JSON value or None).
type Event = (usize, String, i64, Option<Vec<u8>>);

/// Merges per-partition sources by (ts, source) over their heads, as a task does.
fn merge(mut sources: Vec<Vec<Event>>) -> Vec<Event> {
    let mut out = Vec::new();
    let mut heads = vec![0usize; sources.len()];
    loop {
        let next = (0..sources.len())
            .filter(|&s| heads[s] < sources[s].len())
            .min_by_key(|&s| (sources[s][heads[s]].2, s));
        let Some(s) = next else { break };
        out.push(std::mem::take(&mut sources[s][heads[s]]));
        heads[s] += 1;
    }
    out
}

fn produce_partitioned(logs: &dyn LogAccess, topic: &str, events: &[Event]) -> Vec<Vec<Event>> {
    let mut by_partition = vec![Vec::new(); PARTITIONS as usize];
    for e in events {
        by_partition[partition_for_key(e.1.as_bytes(), PARTITIONS) as usize].push(e.clone());
    }
    for (p, evs) in by_partition.iter().enumerate() {
        let records: Vec<common::In> = evs
            .iter()
            .map(|(_, k, ts, v)| (Some(k.clone().into_bytes()), v.clone(), *ts))
            .collect();
        common::produce(logs, topic, p as u32, &records, 5);
    }
    by_partition
}

#[test]
fn orders_are_enriched_with_the_latest_customer_record() {
    let mut rng = Rng(common::seed(11));
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("customers", PARTITIONS, false).unwrap();
    logs.create_topic("orders", PARTITIONS, false).unwrap();

    // Customer updates (and a few deletions) and orders over the same stretch of time; orders
    // are up to 30 time units out of order.
    let mut customers = Vec::new();
    let mut orders = Vec::new();
    for i in 0..3_000i64 {
        let key = format!("c{}", rng.below(40));
        let ts = i * 10;
        if rng.below(4) == 0 {
            let value = (rng.below(20) != 0).then(|| {
                let c = Customer { name: format!("name-{i}"), tier: rng.below(3) as u32 };
                serde_json::to_vec(&c).unwrap()
            });
            customers.push((0, key, ts, value));
        } else {
            let o = Order { id: i as u64, amount: rng.below(1000) as i64 };
            let ts = ts - rng.below(30) as i64;
            orders.push((1, key, ts, Some(serde_json::to_vec(&o).unwrap())));
        }
    }
    let customer_parts = produce_partitioned(&*logs, "customers", &customers);
    let order_parts = produce_partitioned(&*logs, "orders", &orders);

    let b = ProcessorBuilder::new("enrich", 1);
    let table = b.table::<String, Customer>("customers", "customers", Utf8, Json).unwrap();
    let orders_stream = b.stream::<String, Order>("orders", Utf8, Json);
    orders_stream
        .join_table(&table, |_, o, c| Enriched {
            order: o.id,
            customer: Some(c.name.clone()),
            tier: Some(c.tier),
        })
        .to("enriched", Utf8, Json);
    orders_stream
        .left_join_table(&table, |_, o, c| Enriched {
            order: o.id,
            customer: c.map(|c| c.name.clone()),
            tier: c.map(|c| c.tier),
        })
        .to("enriched-left", Utf8, Json);
    let processor = b.build().unwrap();
    let mut config = TaskConfig::new(dir.path().join("state"));
    config.read_max_bytes = 700;
    config.poll_max_records = 37;
    let (tables, _) = common::run_to_end(&processor, logs.clone(), &config);

    // Expected, partition by partition.
    let mut inner = Vec::new();
    let mut left = Vec::new();
    let mut final_table = BTreeMap::new();
    for p in 0..PARTITIONS as usize {
        let mut state: BTreeMap<String, Customer> = BTreeMap::new();
        for (source, key, _, value) in
            merge(vec![customer_parts[p].clone(), order_parts[p].clone()])
        {
            let value = value.unwrap_or_default();
            if source == 0 {
                if value.is_empty() {
                    state.remove(&key);
                } else {
                    state.insert(key, serde_json::from_slice(&value).unwrap());
                }
                continue;
            }
            let o: Order = serde_json::from_slice(&value).unwrap();
            let c = state.get(&key);
            let e = Enriched {
                order: o.id,
                customer: c.map(|c| c.name.clone()),
                tier: c.map(|c| c.tier),
            };
            if c.is_some() {
                inner.push((p, e.clone()));
            }
            left.push((p, e));
        }
        final_table.extend(state);
    }
    let got = |topic: &str| -> Vec<(usize, Enriched)> {
        (0..PARTITIONS)
            .flat_map(|p| common::read_all(&*logs, topic, p))
            .map(|r| {
                let key = String::from_utf8(r.key.unwrap()).unwrap();
                let p = partition_for_key(key.as_bytes(), PARTITIONS) as usize;
                (p, serde_json::from_slice(&r.value.unwrap()).unwrap())
            })
            .collect()
    };
    // Output partitions are chosen by key, so compare per input partition, in order.
    let by_part = |v: Vec<(usize, Enriched)>| {
        let mut m: BTreeMap<usize, Vec<Enriched>> = BTreeMap::new();
        for (p, e) in v {
            m.entry(p).or_default().push(e);
        }
        m
    };
    assert!(inner.len() > 1000 && inner.len() < left.len());
    assert_eq!(by_part(got("enriched")), by_part(inner));
    assert_eq!(by_part(got("enriched-left")), by_part(left));
    let table: BTreeMap<String, Customer> =
        tables.reader("customers").unwrap().scan().into_iter().collect();
    assert_eq!(table, final_table);
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Paid {
    order: String,
    order_ts: i64,
    payment_ts: i64,
}

#[test]
fn payments_join_orders_within_the_window_and_late_ones_are_set_aside() {
    let mut rng = Rng(common::seed(12));
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("orders", PARTITIONS, false).unwrap();
    logs.create_topic("payments", PARTITIONS, false).unwrap();
    const WINDOW: i64 = 100;
    const GRACE: i64 = 120;

    // Orders keyed by id; zero to two payments each, mostly after the order, some too late for
    // the window, some out of order, a few far behind (late).
    let mut orders = Vec::new();
    let mut payments = Vec::new();
    for i in 0..1_500i64 {
        let key = format!("o{}", i % 700);
        // Times on a grid of 10, so pairs exactly at the window's edge are common.
        let ts = i * 10 + 10 * rng.below(16) as i64;
        orders.push((0, key.clone(), ts, Some(ts.to_string().into_bytes())));
        for _ in 0..rng.below(3) {
            let mut pts = ts + 10 * rng.below(14) as i64 - 20;
            if rng.below(50) == 0 {
                pts -= 500;
            }
            payments.push((
                pts + 10 * rng.below(6) as i64,
                (1, key.clone(), pts, Some(pts.to_string().into_bytes())),
            ));
        }
    }
    // Payments arrive roughly in time order, up to 60 units out of order.
    payments.sort_by_key(|p| p.0);
    let payments: Vec<Event> = payments.into_iter().map(|p| p.1).collect();
    let order_parts = produce_partitioned(&*logs, "orders", &orders);
    let payment_parts = produce_partitioned(&*logs, "payments", &payments);

    let b = ProcessorBuilder::new("paid", 1);
    b.dead_letter("paid-late");
    // Values are the records' own timestamps, so each output names its pair.
    let o = b.stream::<String, i64>("orders", Utf8, Json);
    let p = b.stream::<String, i64>("payments", Utf8, Json);
    o.join(&p, JoinWindow::within(WINDOW).grace(GRACE), |k, ot, pt| Paid {
        order: k.clone(),
        order_ts: *ot,
        payment_ts: *pt,
    })
    .to("paid", Utf8, Json);
    let processor = b.build().unwrap();
    let mut config = TaskConfig::new(dir.path().join("state"));
    config.read_max_bytes = 900;
    let (_, metrics) = common::run_to_end(&processor, logs.clone(), &config);

    // Expected: simulate arrival order and lateness, then every on-time pair in the window.
    let mut expected = Vec::new();
    let mut late = 0;
    for part in 0..PARTITIONS as usize {
        let mut max = i64::MIN;
        let mut on_time: [Vec<(String, i64)>; 2] = [Vec::new(), Vec::new()];
        for (source, key, ts, _) in
            merge(vec![order_parts[part].clone(), payment_parts[part].clone()])
        {
            max = max.max(ts);
            if ts < max - GRACE {
                late += 1;
                continue;
            }
            for (k, other) in &on_time[1 - source] {
                if *k == key && (ts - other).abs() <= WINDOW {
                    let (order_ts, payment_ts) =
                        if source == 0 { (ts, *other) } else { (*other, ts) };
                    let paid = Paid { order: key.clone(), order_ts, payment_ts };
                    expected.push((paid, ts.max(*other)));
                }
            }
            on_time[source].push((key, ts));
        }
    }
    let mut got: Vec<(Paid, i64)> = common::read_topic(&*logs, "paid")
        .into_iter()
        .map(|r| (serde_json::from_slice(&r.value.unwrap()).unwrap(), r.ts))
        .collect();
    got.sort();
    expected.sort();
    assert!(late > 0 && expected.len() > 500, "late {late}, pairs {}", expected.len());
    assert_eq!(got, expected);
    assert_eq!(metrics.iter().map(|m| m.late).sum::<u64>(), late);
    let dead = common::read_topic(&*logs, "paid-late");
    assert_eq!(dead.len() as u64, late);
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct MaybePaid {
    order: String,
    order_ts: Option<i64>,
    payment_ts: Option<i64>,
}

#[test]
fn left_and_outer_joins_emit_each_unmatched_record_once_its_window_has_closed() {
    let mut rng = Rng(common::seed(13));
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    logs.create_topic("orders", PARTITIONS, false).unwrap();
    logs.create_topic("payments", PARTITIONS, false).unwrap();
    // A payment may be 50 before its order and 100 after it.
    let window = JoinWindow { before_ms: 50, after_ms: 100, grace_ms: 80 };

    // Orders with zero to two payments around them, payments up to 60 out of order, a few
    // stamped far behind where they arrive (late) or far ahead (matching nothing).
    let mut orders = Vec::new();
    let mut payments = Vec::new();
    for i in 0..1_200i64 {
        let key = format!("o{}", i % 500);
        let ts = i * 10 + 10 * rng.below(8) as i64;
        orders.push((0, key.clone(), ts, Some(ts.to_string().into_bytes())));
        for _ in 0..rng.below(3) {
            let mut pts = ts + 10 * rng.below(20) as i64 - 70;
            // Where it comes in the payments topic: near `pts`, before any shift below.
            let arrival = pts + 10 * rng.below(6) as i64;
            match rng.below(40) {
                0 => pts -= 400,
                1 => pts += 300,
                _ => {}
            }
            payments.push((arrival, (1, key.clone(), pts, Some(pts.to_string().into_bytes()))));
        }
    }
    payments.sort_by_key(|p| p.0);
    let payments: Vec<Event> = payments.into_iter().map(|p| p.1).collect();
    let order_parts = produce_partitioned(&*logs, "orders", &orders);
    let payment_parts = produce_partitioned(&*logs, "payments", &payments);

    // Values are the records' own timestamps, so each output names its record(s).
    let b = ProcessorBuilder::new("maybe-paid", 1);
    let o = b.stream::<String, i64>("orders", Utf8, Json);
    let p = b.stream::<String, i64>("payments", Utf8, Json);
    o.left_join(&p, window, |k, ot, pt| MaybePaid {
        order: k.clone(),
        order_ts: Some(*ot),
        payment_ts: pt.copied(),
    })
    .to("paid-left", Utf8, Json);
    o.outer_join(&p, window, |k, ot, pt| MaybePaid {
        order: k.clone(),
        order_ts: ot.copied(),
        payment_ts: pt.copied(),
    })
    .to("paid-outer", Utf8, Json);
    let processor = b.build().unwrap();
    let mut config = TaskConfig::new(dir.path().join("state"));
    config.read_max_bytes = 800;
    common::run_to_end(&processor, logs.clone(), &config);

    // Expected: the on-time records — each judged against its own input partition (more than
    // grace behind the largest event time before it in that partition is late), whatever the
    // arrival order — every pair of them within the window (at max(tl, tr)), and each one
    // without a partner whose window closed before the input ended (at its own time): the
    // watermark — the slower partition's frontier less grace — passed t + after (orders) or
    // t + before (payments).
    let (mut left_want, mut outer_want) = (Vec::new(), Vec::new());
    let mut late = 0;
    for part in 0..PARTITIONS as usize {
        let mut max = [i64::MIN; 2];
        let mut on_time: [Vec<(String, i64)>; 2] = [Vec::new(), Vec::new()];
        for (source, key, ts, _) in
            merge(vec![order_parts[part].clone(), payment_parts[part].clone()])
        {
            max[source] = max[source].max(ts);
            if ts < max[source] - window.grace_ms {
                late += 1;
                continue;
            }
            on_time[source].push((key, ts));
        }
        let watermark = max[0].min(max[1]) - window.grace_ms;
        let joins = |tl: i64, tr: i64| tl - window.before_ms <= tr && tr <= tl + window.after_ms;
        for (key, tl) in &on_time[0] {
            let mut matched = false;
            for (_, tr) in on_time[1].iter().filter(|(k, tr)| k == key && joins(*tl, *tr)) {
                matched = true;
                let pair =
                    MaybePaid { order: key.clone(), order_ts: Some(*tl), payment_ts: Some(*tr) };
                left_want.push((pair.clone(), *tl.max(tr)));
                outer_want.push((pair, *tl.max(tr)));
            }
            if !matched && *tl < watermark - window.after_ms {
                let alone = MaybePaid { order: key.clone(), order_ts: Some(*tl), payment_ts: None };
                left_want.push((alone.clone(), *tl));
                outer_want.push((alone, *tl));
            }
        }
        for (key, tr) in &on_time[1] {
            let matched = on_time[0].iter().any(|(k, tl)| k == key && joins(*tl, *tr));
            if !matched && *tr < watermark - window.before_ms {
                let alone = MaybePaid { order: key.clone(), order_ts: None, payment_ts: Some(*tr) };
                outer_want.push((alone, *tr));
            }
        }
    }
    let got = |topic: &str| -> Vec<(MaybePaid, i64)> {
        let mut v: Vec<(MaybePaid, i64)> = common::read_topic(&*logs, topic)
            .into_iter()
            .map(|r| (serde_json::from_slice(&r.value.unwrap()).unwrap(), r.ts))
            .collect();
        v.sort();
        v
    };
    let count = |want: &[(MaybePaid, i64)], f: fn(&MaybePaid) -> bool| {
        want.iter().filter(|(m, _)| f(m)).count()
    };
    assert!(late > 0, "no late records");
    assert!(count(&left_want, |m| m.payment_ts.is_some()) > 500, "few pairs");
    assert!(count(&left_want, |m| m.payment_ts.is_none()) > 20, "few unmatched orders");
    assert!(count(&outer_want, |m| m.order_ts.is_none()) > 20, "few unmatched payments");
    left_want.sort();
    outer_want.sort();
    assert_eq!(got("paid-left"), left_want);
    assert_eq!(got("paid-outer"), outer_want);
}
