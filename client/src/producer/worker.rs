//! The producer's background task: owns every batch, decides when each is sent, and settles
//! the answers (`answers.rs`).
//!
//! A single task owns all state, so there are no locks on the produce path. It waits on three
//! things: commands from `Producer` (records, encoded groups, flushes), events from the requests it spawned
//! (answers, producer identities), and a timer for the next batch to linger out or retry.
//! After each wake-up it sends whatever is ready (`dispatch`) and answers finished flushes.
//!
//! Invariants:
//! - At most `max_in_flight` produce requests are outstanding (`in_flight.len()`; one owner,
//!   so a count suffices where callers sharing a limit would need a semaphore), and at most one
//!   batch per partition per request.
//! - Idempotent: a partition's front batch goes only when its [`Gate`] is open — at most
//!   `max_in_flight` numbered batches unsettled per partition, resends one at a time in
//!   sequence order (see `partition.rs`).
//! - `live` holds the id of every batch not yet completed; a flush waits until none older than
//!   itself remains.
//! - Batch ids, and so a partition's queue, follow the order of commands: a group from
//!   `send_batch` closes its partition's open batch and queues behind it, so records keep the
//!   order in which `send` and `send_batch` were called on one partition.

mod answers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use eddy_protocol::v1::{self, request};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::batch::{Batch, Identity, Pending, PendingBatch, Target};
use super::partition::{Gate, PartitionQueue};
use super::{ProducerConfig, Shared};
use crate::partitioner::Sticky;
use crate::{ClientError, Transport, expect_body};

/// Commands the worker drains per wake-up before sending, so a burst fills batches.
const COMMANDS_PER_ROUND: usize = 4096;

/// What `Producer` asks of the worker.
#[derive(Debug)]
pub(super) enum Command {
    Send(Pending),
    /// A whole group from `send_batch`: one batch of its own.
    SendBatch(PendingBatch),
    /// Answer once every record sent before this is settled.
    Flush(oneshot::Sender<()>),
}

/// What spawned requests report back.
#[derive(Debug)]
enum Event {
    /// A produce request finished: the answer (`None` with `ACKS_NONE`), or why not.
    Produced {
        request: u64,
        outcome: Result<Option<v1::ProduceResponse>, ClientError>,
    },
    Initialized(Result<Identity, ClientError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdentityState {
    /// Not asked for yet (or to be asked again, not before `init_retry_at`).
    Unset,
    Requested,
    Ready(Identity),
}

pub(super) struct Worker<T> {
    shared: Arc<Shared<T>>,
    config: ProducerConfig,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
    queues: HashMap<Arc<str>, BTreeMap<u32, PartitionQueue>>,
    sticky: Sticky,
    in_flight: HashMap<u64, Vec<Batch>>,
    next_request: u64,
    next_batch: u64,
    live: BTreeSet<u64>,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    identity: IdentityState,
    init_failures: u32,
    init_retry_at: Option<Instant>,
    /// The `Producer` is gone: send everything, then stop.
    closing: bool,
}

impl<T: Transport> Worker<T> {
    pub(super) fn new(
        shared: Arc<Shared<T>>,
        config: ProducerConfig,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        Self {
            shared,
            config,
            commands,
            events,
            events_tx,
            queues: HashMap::new(),
            sticky: Sticky::new(),
            in_flight: HashMap::new(),
            next_request: 0,
            next_batch: 0,
            live: BTreeSet::new(),
            flushes: Vec::new(),
            identity: IdentityState::Unset,
            init_failures: 0,
            init_retry_at: None,
            closing: false,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            // One reading of the clock per round, shared by `dispatch` and `next_wake`.
            let now = Instant::now();
            self.dispatch(now);
            self.answer_flushes();
            if self.closing && self.live.is_empty() && self.identity != IdentityState::Requested {
                break;
            }
            let wake = self.next_wake(now);
            let timer = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.commands.recv(), if !self.closing => match command {
                    Some(command) => {
                        self.on_command(command);
                        for _ in 1..COMMANDS_PER_ROUND {
                            let Ok(command) = self.commands.try_recv() else { break };
                            self.on_command(command);
                        }
                    }
                    None => self.start_closing(),
                },
                Some(event) = self.events.recv() => self.on_event(event),
                () = timer => {}
            }
        }
        tracing::debug!("producer worker stopped");
    }

    fn start_closing(&mut self) {
        self.closing = true;
        self.close_open_batches();
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send(pending) => self.accept(pending),
            Command::SendBatch(group) => self.accept_group(group),
            Command::Flush(done) => {
                self.close_open_batches();
                self.flushes.push((self.next_batch, done));
            }
        }
    }

    /// Adds a record to the open batch of its partition, opening one if needed.
    fn accept(&mut self, pending: Pending) {
        let topic = Arc::clone(&pending.topic);
        let batch_bytes = self.config.batch_bytes;
        let partition = match pending.target {
            Target::Partition(p) => p,
            Target::Sticky(partitions) => {
                let p = self.sticky.partition(&topic, partitions);
                match self.queue(&topic, p).open_batch() {
                    Some(open) if !open.fits(pending.size, batch_bytes) => {
                        // The sticky batch is full: close it, and the record starts the next
                        // partition's batch.
                        open.open = false;
                        self.sticky.batch_closed(&topic, p);
                        self.sticky.partition(&topic, partitions)
                    }
                    _ => p,
                }
            }
        };
        let queue =
            self.queues.entry(Arc::clone(&topic)).or_default().entry(partition).or_default();
        if let Some(open) = queue.open_batch() {
            if open.fits(pending.size, batch_bytes) {
                open.push(pending);
                return;
            }
            open.open = false;
        }
        let id = self.next_batch;
        self.next_batch += 1;
        self.live.insert(id);
        let mut batch = Batch::new(id, topic, partition, Instant::now());
        batch.push(pending);
        queue.batches.push_back(batch);
    }

    /// Queues a `send_batch` group as a batch of its own, behind its partition's open batch
    /// (closed now, so the group's records follow every record sent before them).
    fn accept_group(&mut self, group: PendingBatch) {
        let topic = Arc::clone(&group.topic);
        let partition = match group.target {
            Target::Partition(p) => p,
            Target::Sticky(partitions) => self.sticky.partition(&topic, partitions),
        };
        let queue =
            self.queues.entry(Arc::clone(&topic)).or_default().entry(partition).or_default();
        if let Some(open) = queue.open_batch() {
            open.open = false;
        }
        // The group is a closed batch of this partition: if it is the sticky one, the next
        // keyless record or group goes to the next partition, as after any full batch.
        self.sticky.batch_closed(&topic, partition);
        let id = self.next_batch;
        self.next_batch += 1;
        self.live.insert(id);
        queue.batches.push_back(Batch::group(id, partition, group, Instant::now()));
    }

    fn close_open_batches(&mut self) {
        for (topic, partitions) in &mut self.queues {
            for (partition, queue) in partitions {
                if let Some(open) = queue.open_batch() {
                    open.open = false;
                    self.sticky.batch_closed(topic, *partition);
                }
            }
        }
    }

    fn answer_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let oldest = self.live.first().copied();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(watermark, _)| oldest.is_none_or(|o| o >= *watermark));
        for (_, tx) in done {
            // A flush whose caller went away needs no answer.
            let _ = tx.send(());
        }
        self.flushes = waiting;
    }

    fn identity_ready(&self) -> Option<Identity> {
        match self.identity {
            IdentityState::Ready(identity) => Some(identity),
            _ => None,
        }
    }

    /// Sends ready batches while request slots are free.
    fn dispatch(&mut self, now: Instant) {
        while self.in_flight.len() < self.config.max_in_flight {
            let batches = self.collect_request(now);
            if batches.is_empty() {
                break;
            }
            self.spawn_produce(batches);
        }
    }

    /// Takes the ready batches for one request: the front batch of each partition that may
    /// send, up to `request_bytes`.
    fn collect_request(&mut self, now: Instant) -> Vec<Batch> {
        let (idempotent, linger, max) =
            (self.config.idempotent, self.config.linger, self.config.max_in_flight);
        let identity = self.identity_ready();
        let mut need_identity = false;
        let mut out: Vec<Batch> = Vec::new();
        let mut bytes = 0usize;
        'topics: for (topic, partitions) in &mut self.queues {
            for (partition, queue) in partitions.iter_mut() {
                if out.first().is_some_and(|b| b.alone) {
                    break 'topics;
                }
                if queue.gate(idempotent, identity, max) != Gate::Open {
                    continue;
                }
                let Some(front) = queue.batches.front() else { continue };
                if front.ready_at(linger) > now || (front.alone && !out.is_empty()) {
                    continue;
                }
                let len = front.len_bytes();
                if !out.is_empty() && bytes.saturating_add(len) > self.config.request_bytes {
                    continue;
                }
                if idempotent && front.encoded.is_none() && identity.is_none() {
                    need_identity = true;
                    continue;
                }
                let Some(mut batch) = queue.batches.pop_front() else { continue };
                if batch.open {
                    self.sticky.batch_closed(topic, *partition);
                }
                if batch.encoded.is_none() {
                    batch.encode(identity.map(|id| (id, &mut queue.sequence)));
                }
                queue.sending(&mut batch);
                bytes = bytes.saturating_add(len);
                out.push(batch);
            }
        }
        if need_identity {
            self.request_identity(now);
        }
        out
    }

    fn spawn_produce(&mut self, batches: Vec<Batch>) {
        let request = self.next_request;
        self.next_request += 1;
        let mut topics: Vec<v1::ProduceTopic> = Vec::new();
        for batch in &batches {
            let Some(encoded) = &batch.encoded else { continue };
            let partition =
                v1::ProducePartition { partition: batch.partition, batch: encoded.bytes.clone() };
            match topics.iter_mut().find(|t| *t.topic == *batch.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(v1::ProduceTopic {
                    topic: batch.topic.to_string(),
                    partitions: vec![partition],
                }),
            }
        }
        let acks = self.config.acks;
        let body = request::Body::Produce(v1::ProduceRequest { acks: acks as i32, topics });
        let shared = Arc::clone(&self.shared);
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let outcome = if acks == v1::Acks::None {
                shared.transport.send(body).await.map(|()| None)
            } else {
                match shared.transport.call(body).await {
                    Ok(body) => expect_body!(body, Produce).map(Some),
                    Err(e) => Err(e),
                }
            };
            // The worker outlives every request it spawned; if not, nobody is left to tell.
            drop(events.send(Event::Produced { request, outcome }));
        });
        self.in_flight.insert(request, batches);
    }

    fn request_identity(&mut self, now: Instant) {
        if self.identity != IdentityState::Unset || self.init_retry_at.is_some_and(|at| at > now) {
            return;
        }
        self.identity = IdentityState::Requested;
        let shared = Arc::clone(&self.shared);
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let body = request::Body::InitProducer(v1::InitProducerRequest {});
            let result = match shared.transport.call(body).await {
                Ok(body) => expect_body!(body, InitProducer).and_then(|r| {
                    let epoch = i16::try_from(r.producer_epoch).map_err(|_| {
                        ClientError::UnexpectedResponse("producer epoch outside i16")
                    })?;
                    Ok(Identity { producer_id: r.producer_id, epoch })
                }),
                Err(e) => Err(e),
            };
            drop(events.send(Event::Initialized(result)));
        });
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Produced { request, outcome } => self.on_produced(request, outcome),
            Event::Initialized(Ok(identity)) => {
                tracing::debug!(
                    producer_id = identity.producer_id,
                    epoch = identity.epoch,
                    "producer identity"
                );
                self.identity = IdentityState::Ready(identity);
                self.init_failures = 0;
                self.init_retry_at = None;
            }
            Event::Initialized(Err(error)) => self.on_init_failed(error),
        }
    }

    fn on_init_failed(&mut self, error: ClientError) {
        self.identity = IdentityState::Unset;
        self.init_failures += 1;
        if self.init_failures <= self.config.retries && answers::retriable(&error) {
            tracing::warn!(%error, attempt = self.init_failures, "InitProducer failed; retrying");
            self.init_retry_at = Some(Instant::now() + self.backoff(self.init_failures));
            return;
        }
        tracing::warn!(%error, "InitProducer failed; failing the records waiting for it");
        self.init_failures = 0;
        self.init_retry_at = None;
        // Batches already numbered keep their identity and can still be sent.
        for partitions in self.queues.values_mut() {
            for queue in partitions.values_mut() {
                let (keep, fail): (Vec<Batch>, Vec<Batch>) =
                    queue.batches.drain(..).partition(|b| b.encoded.is_some());
                queue.batches = keep.into();
                for batch in fail {
                    self.live.remove(&batch.id);
                    batch.fail(&error);
                }
            }
        }
    }

    fn queue(&mut self, topic: &Arc<str>, partition: u32) -> &mut PartitionQueue {
        self.queues.entry(Arc::clone(topic)).or_default().entry(partition).or_default()
    }

    fn backoff(&self, attempt: u32) -> std::time::Duration {
        self.config.retry_backoff * (1u32 << attempt.saturating_sub(1).min(5))
    }

    /// When the next batch lingers out or may be retried (`None`: nothing is waiting on time).
    ///
    /// `now` must be the instant `dispatch` just used: a deadline that passed between two
    /// readings of the clock would be neither sent nor waited for (a lost wake-up).
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let (idempotent, max) = (self.config.idempotent, self.config.max_in_flight);
        let identity = self.identity_ready();
        let mut wake = self.init_retry_at.filter(|at| *at > now);
        for queue in self.queues.values().flat_map(BTreeMap::values) {
            // A blocked partition waits for an answer, which wakes the worker by itself.
            if queue.gate(idempotent, identity, max) != Gate::Open {
                continue;
            }
            let Some(front) = queue.batches.front() else { continue };
            let at = front.ready_at(self.config.linger);
            if at > now {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        wake
    }
}
