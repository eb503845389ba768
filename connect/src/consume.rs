//! What sinks read: the partitions of their topics from the offsets in their position, in
//! batches, waiting (in short sleeps that a stop ends) while there is nothing new.
//!
//! Invariant: [`Consumer::advance`] is called only once a batch is applied; the offsets it
//! returns (the next record to read per partition) are what the sink stores.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::ConnectError;
use crate::runtime::Ctx;
use crate::topics::{InRecord, read_from};

/// Bytes read from one partition per batch.
const READ_BYTES: usize = 1 << 20;
/// The pause between looks at idle partitions.
const IDLE: Duration = Duration::from_millis(50);

/// A record read, with where it came from.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: u32,
    pub record: InRecord,
}

/// The next offset of every partition of the sink's topics.
#[derive(Debug)]
pub struct Consumer {
    next: BTreeMap<(String, u32), u64>,
}

impl Consumer {
    /// Starts at the offsets in `stored` (`{"offsets": {"topic/p": n}}`), else at 0. The topics
    /// must exist.
    pub fn open(
        ctx: &Ctx,
        topics: &[String],
        stored: Option<&Value>,
    ) -> Result<Consumer, ConnectError> {
        let mut next = BTreeMap::new();
        let offsets = stored.and_then(|s| s.get("offsets"));
        for t in topics {
            for p in 0..ctx.logs.partition_count(t)? {
                let at = offsets
                    .and_then(|o| o.get(format!("{t}/{p}")))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                next.insert((t.clone(), p), at);
            }
        }
        Ok(Consumer { next })
    }

    /// The next records (partition by partition), waiting while there are none.
    pub async fn poll(&self, ctx: &Ctx) -> Result<Vec<Consumed>, ConnectError> {
        loop {
            let mut out = Vec::new();
            for ((topic, partition), at) in &self.next {
                for record in read_from(&*ctx.logs, topic, *partition, *at, READ_BYTES)? {
                    out.push(Consumed { topic: topic.clone(), partition: *partition, record });
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            ctx.sleep(IDLE).await?;
        }
    }

    /// Marks `batch` applied; the offsets to store.
    pub fn advance(&mut self, batch: &[Consumed]) -> Value {
        for c in batch {
            if let Some(at) = self.next.get_mut(&(c.topic.clone(), c.partition)) {
                *at = (*at).max(c.record.offset + 1);
            }
        }
        let offsets: Map<String, Value> =
            self.next.iter().map(|((t, p), at)| (format!("{t}/{p}"), Value::from(*at))).collect();
        Value::Object(offsets)
    }

    /// The offsets as a status shows them.
    pub fn shown(&self) -> String {
        self.next.iter().map(|((t, p), at)| format!("{t}/{p}@{at}")).collect::<Vec<_>>().join(" ")
    }
}
