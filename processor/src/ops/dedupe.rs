//! Dedupe by key within a window of event time.
//!
//! A record is dropped when a record with the same key was *kept* at an event time less than
//! `window` away (`|t - t_kept| < window`); otherwise it is kept and passed on. Late records
//! (more than grace behind their own origin's frontier, `state::Clock`) are set aside: the
//! kept times they would be compared with may already be forgotten. Kept times are forgotten
//! once no on-time record of any origin could be within `window` of them
//! (`t_kept <= watermark - window`, the watermark being the slowest origin's).

use std::collections::BTreeSet;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::aggregator::StateData;
use crate::context::Cx;
use crate::graph::{Down, Node, Rec};
use crate::state::{Clock, StateOp, load_value, save_value};

#[derive(Serialize, Deserialize)]
struct Saved {
    clock: Clock,
    kept: Vec<(String, i64)>,
}

pub(crate) struct Dedupe<K, V> {
    pub window_ms: i64,
    pub down: Down<K, V>,
    clock: Clock,
    /// (key as JSON, event time) of kept records.
    kept: BTreeSet<(String, i64)>,
    by_time: BTreeSet<(i64, String)>,
    /// The sources (indices) that feed this operator; their origins, resolved at first use.
    sources: Vec<usize>,
    expected: Option<Vec<u64>>,
    _v: PhantomData<fn(V)>,
}

impl<K, V> Dedupe<K, V> {
    pub fn new(window_ms: i64, grace_ms: i64, down: Down<K, V>, sources: Vec<usize>) -> Self {
        Self {
            window_ms: window_ms.max(1),
            down,
            clock: Clock::new(grace_ms.max(0)),
            kept: BTreeSet::new(),
            by_time: BTreeSet::new(),
            sources,
            expected: None,
            _v: PhantomData,
        }
    }
}

impl<K: StateData, V> Node<K, V> for Dedupe<K, V> {
    fn push(&mut self, rec: Rec<K, V>, cx: &mut Cx) {
        if let Err(late) = self.clock.admit(cx.origin, rec.ts, &cx.hints) {
            return cx.set_aside(&late);
        }
        let Some(kt) = super::key_text(&rec.key, cx) else { return };
        let lo = (kt.clone(), rec.ts.saturating_sub(self.window_ms - 1));
        let hi = (kt.clone(), rec.ts.saturating_add(self.window_ms - 1));
        if self.kept.range(lo..=hi).next().is_some() {
            cx.metrics.duplicates += 1;
        } else {
            self.by_time.insert((rec.ts, kt.clone()));
            self.kept.insert((kt, rec.ts));
            self.down.push(rec, cx);
        }
        let expected = self.expected.get_or_insert_with(|| cx.expected(&self.sources));
        let watermark = self.clock.watermark(expected, &cx.hints, &|o| cx.is_idle(o));
        let forget_before = watermark.saturating_sub(self.window_ms);
        while let Some((t, k)) = self.by_time.first().cloned() {
            if t > forget_before {
                break;
            }
            self.by_time.pop_first();
            self.kept.remove(&(k, t));
        }
    }
}

impl<K, V> StateOp for Dedupe<K, V> {
    fn save(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        save_value(
            &Saved { clock: self.clock.clone(), kept: self.kept.iter().cloned().collect() },
            out,
        )
    }

    fn load(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        let saved: Saved = load_value(&mut bytes)?;
        self.clock = saved.clock;
        self.by_time = saved.kept.iter().map(|(k, t)| (*t, k.clone())).collect();
        self.kept = saved.kept.into_iter().collect();
        Ok(())
    }

    fn entries(&self) -> u64 {
        self.kept.len() as u64
    }
}
