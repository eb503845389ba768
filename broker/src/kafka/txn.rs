//! Kafka transactions on this listener: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit and EndTxn, and the check a transactional produce passes — translated onto
//! the broker's transaction coordinator (`crate::transactions`), which owns the rules.
//!
//! Error codes are Kafka's for the same refusal, by request version: a fenced producer gets
//! `PRODUCER_FENCED` from the versions that know it (KIP-588) and `INVALID_PRODUCER_EPOCH`
//! before them and on Produce.
//!
//! ACLs as Kafka's: every request of a transaction needs WRITE on its transactional id
//! (`TRANSACTIONAL_ID_AUTHORIZATION_FAILED`), its partitions WRITE on their topics, its
//! offsets READ on the group and the topics.

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;

use super::Context;
use super::authz::{check, init_producer};
use super::data::error_code;
use crate::security::acl::{Operation, ResourceType};
use crate::security::acls::Access;
use crate::transactions::ProduceGuard;
use crate::transactions::state::{PendingOffset, TxnError};
use eddy_storage::batch::BatchHeader;

/// The Kafka code for `e`; `fenced` is what this request version calls a fenced producer.
fn code(e: &TxnError, fenced: K) -> i16 {
    let k = match e {
        TxnError::InvalidTimeout { .. } => K::InvalidTransactionTimeout,
        TxnError::UnknownId(_) | TxnError::WrongProducerId { .. } => K::InvalidProducerIdMapping,
        TxnError::Fenced { .. } => fenced,
        TxnError::Concurrent => K::ConcurrentTransactions,
        TxnError::InvalidState { .. } => K::InvalidTxnState,
        TxnError::Broker(e) => return error_code(e),
    };
    k.code()
}

/// PRODUCER_FENCED from `since` on, INVALID_PRODUCER_EPOCH before.
fn fenced(version: i16, since: i16) -> K {
    if version >= since { K::ProducerFenced } else { K::InvalidProducerEpoch }
}

fn logged(api: &str, id: &str, e: &TxnError) {
    tracing::debug!(api, transactional_id = id, error = %e, "transactional request refused");
}

/// WRITE on transactional id `id`.
fn write_id(access: &Access, id: &str) -> Result<(), i16> {
    check(access, Operation::Write, ResourceType::TransactionalId, id)
}

pub(super) async fn init_producer_id(
    cx: &Context,
    access: &Access,
    r: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let answer =
        InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    // An empty transactional id (some clients send "" for none) names no transaction.
    let id = r.transactional_id.as_ref().map(|t| t.0.to_string()).filter(|t| !t.is_empty());
    if let Err(code) = init_producer(access, id.as_deref()) {
        return answer.with_error_code(code);
    }
    let Some(id) = id else {
        return match cx.broker.init_producer() {
            Ok((id, epoch)) => answer.with_producer_id(ProducerId(id)).with_producer_epoch(epoch),
            Err(e) => answer.with_error_code(error_code(&e)),
        };
    };
    if let Err(e) = cx.broker.topics().check_running() {
        return answer.with_error_code(error_code(&e));
    }
    // KIP-360: a client that held an epoch says which; -1 when it holds none.
    let current = (r.producer_id.0 >= 0).then_some((r.producer_id.0, r.producer_epoch));
    let broker = &cx.broker;
    let done = broker
        .transactions()
        .init_producer_id(broker.groups(), &id, r.transaction_timeout_ms, current, || {
            broker.allocate_producer_id()
        })
        .await;
    match done {
        Ok((pid, epoch)) => answer.with_producer_id(ProducerId(pid)).with_producer_epoch(epoch),
        Err(e) => {
            logged("InitProducerId", &id, &e);
            answer.with_error_code(code(&e, fenced(version, 4)))
        }
    }
}

pub(super) async fn add_partitions(
    cx: &Context,
    access: &Access,
    r: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let id = r.v3_and_below_transactional_id.0.to_string();
    // Every partition must exist (and not be internal) and be writable by the principal; if
    // one is not, nothing is added.
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    for t in &r.v3_and_below_topics {
        let topic = t.name.0.to_string();
        let refused = check(access, Operation::Write, ResourceType::Topic, &topic).err();
        let count = (!crate::topic::is_internal(&topic))
            .then(|| cx.broker.topics().partition_count(&topic))
            .flatten();
        for &p in &t.partitions {
            match u32::try_from(p).ok().filter(|p| count.is_some_and(|n| *p < n)) {
                _ if refused.is_some() => unknown.push((topic.clone(), p, refused)),
                Some(p) => wanted.push((topic.clone(), p)),
                None => unknown.push((topic.clone(), p, None)),
            }
        }
    }
    let outcome = if let Err(code) = write_id(access, &id) {
        code
    } else if unknown.is_empty() {
        let (pid, epoch) = (r.v3_and_below_producer_id.0, r.v3_and_below_producer_epoch);
        match cx.broker.transactions().add_partitions(&id, pid, epoch, wanted).await {
            Ok(()) => 0,
            Err(e) => {
                logged("AddPartitionsToTxn", &id, &e);
                code(&e, fenced(version, 2))
            }
        }
    } else {
        K::OperationNotAttempted.code()
    };
    let results = r
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|&p| {
                    let missing =
                        unknown.iter().find(|(n, q, _)| n == t.name.0.as_str() && *q == p);
                    let code = match missing {
                        // The transactional id's refusal is every partition's.
                        _ if outcome == K::TransactionalIdAuthorizationFailed.code() => outcome,
                        Some((_, _, Some(refused))) => *refused,
                        Some(_) => K::UnknownTopicOrPartition.code(),
                        None => outcome,
                    };
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

pub(super) async fn add_offsets(
    cx: &Context,
    access: &Access,
    r: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let id = r.transactional_id.0.to_string();
    let group = r.group_id.0.to_string();
    let allowed = write_id(access, &id)
        .and_then(|()| check(access, Operation::Read, ResourceType::Group, &group));
    if let Err(code) = allowed {
        return AddOffsetsToTxnResponse::default().with_error_code(code);
    }
    let done =
        cx.broker.transactions().add_offsets(&id, r.producer_id.0, r.producer_epoch, &group).await;
    let code = match done {
        Ok(()) => 0,
        Err(e) => {
            logged("AddOffsetsToTxn", &id, &e);
            code(&e, fenced(version, 2))
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub(super) async fn txn_offset_commit(
    cx: &Context,
    access: &Access,
    r: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let id = r.transactional_id.0.to_string();
    let group = r.group_id.0.to_string();
    let allowed = write_id(access, &id)
        .and_then(|()| check(access, Operation::Read, ResourceType::Group, &group));
    // A topic the principal may not read: its partitions refused, the others committed.
    let topic_refusal =
        |t: &str| allowed.err().or(check(access, Operation::Read, ResourceType::Topic, t).err());
    let offsets = r
        .topics
        .iter()
        .filter(|t| topic_refusal(t.name.0.as_str()).is_none())
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
        .filter_map(|(t, p)| {
            Some(PendingOffset {
                group: group.clone(),
                topic: t.name.0.to_string(),
                partition: u32::try_from(p.partition_index).ok()?,
                offset: u64::try_from(p.committed_offset).ok()?,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            })
        })
        .collect();
    let done = match allowed {
        Err(code) => Err(code),
        Ok(()) => cx
            .broker
            .transactions()
            .txn_offset_commit(&id, r.producer_id.0, r.producer_epoch, offsets)
            .await
            .map_err(|e| {
                logged("TxnOffsetCommit", &id, &e);
                code(&e, fenced(version, 3))
            }),
    };
    let code = match done {
        Ok(()) => 0,
        Err(code) => code,
    };
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let code = topic_refusal(t.name.0.as_str()).unwrap_or(code);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

pub(super) async fn end_txn(
    cx: &Context,
    access: &Access,
    r: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    let id = r.transactional_id.0.to_string();
    if let Err(code) = write_id(access, &id) {
        return EndTxnResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let broker = &cx.broker;
    let done = broker
        .transactions()
        .end_txn(broker.groups(), &id, r.producer_id.0, r.producer_epoch, r.committed)
        .await;
    let code = match done {
        Ok(()) => 0,
        Err(e) => {
            logged("EndTxn", &id, &e);
            code(&e, fenced(version, 2))
        }
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// The check of a produce carrying transactional batches: the request names the
/// transactional id (else `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`, as Kafka), and the
/// coordinator allows this producer and epoch to write to every such partition now. `Ok(None)`:
/// no transactional batch. The guard is held until the batches are appended.
pub(super) async fn check_produce(
    cx: &Context,
    access: &Access,
    r: &ProduceRequest,
) -> Result<Option<ProduceGuard>, i16> {
    let mut producer = None;
    let mut partitions = Vec::new();
    for t in &r.topic_data {
        for p in &t.partition_data {
            let header = p.records.as_ref().and_then(|b| BatchHeader::parse(b).ok());
            let Some(h) = header.filter(BatchHeader::is_transactional) else { continue };
            // A batch that lies about its bits is refused by the batch checks later.
            producer.get_or_insert((h.producer_id, h.producer_epoch));
            if let Ok(partition) = u32::try_from(p.index) {
                partitions.push((t.name.0.to_string(), partition));
            }
        }
    }
    let Some((pid, epoch)) = producer else { return Ok(None) };
    let id = r.transactional_id.as_ref().map(|t| t.0.to_string()).filter(|t| !t.is_empty());
    let Some(id) = id else {
        return Err(K::TransactionalIdAuthorizationFailed.code());
    };
    write_id(access, &id)?;
    match cx.broker.transactions().begin_produce(&id, pid, epoch, &partitions).await {
        Ok(guard) => Ok(Some(guard)),
        Err(e) => {
            logged("Produce", &id, &e);
            Err(code(&e, K::InvalidProducerEpoch))
        }
    }
}
