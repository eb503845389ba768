//! eddy's error codes as Kafka error codes: what a Kafka client is told when the broker's own
//! services refuse something. Each eddy code maps to the Kafka code a Kafka broker sends in the
//! same situation, so clients retry what Kafka would let them retry and stop on the rest.

use eddy_protocol::ErrorCode;
use kafka_protocol::error::ResponseError as K;

/// The Kafka error code for an eddy error code.
pub fn kafka_code(code: ErrorCode) -> i16 {
    use ErrorCode as E;
    let k = match code {
        E::None => return 0,
        E::UnknownTopic | E::UnknownPartition => K::UnknownTopicOrPartition,
        E::TopicAlreadyExists => K::TopicAlreadyExists,
        E::InvalidConfig => K::InvalidConfig,
        E::OffsetOutOfRange => K::OffsetOutOfRange,
        // CORRUPT_MESSAGE is retriable in Kafka's clients; a batch eddy refused is refused
        // for good, which is what INVALID_RECORD says.
        E::InvalidBatch | E::MissingKey => K::InvalidRecord,
        E::BatchTooLarge | E::FrameTooLarge => K::MessageTooLarge,
        E::CorruptStorage | E::StorageError | E::NoSpace => K::KafkaStorageError,
        E::OutOfOrderSequence => K::OutOfOrderSequenceNumber,
        E::ProducerFenced => K::InvalidProducerEpoch,
        E::InternalTopic => K::InvalidTopicException,
        // Retriable: the client refreshes its metadata and tries again (a restarted broker).
        E::ShuttingDown => K::NotLeaderOrFollower,
        E::UnknownMemberId => K::UnknownMemberId,
        E::FencedMemberEpoch => K::FencedMemberEpoch,
        E::StaleMemberEpoch => K::StaleMemberEpoch,
        E::GroupNotEmpty => K::NonEmptyGroup,
        E::UnknownGroup => K::GroupIdNotFound,
        E::InvalidGroupId => K::InvalidGroupId,
        E::UnsupportedAssignor => K::UnsupportedAssignor,
        E::MalformedRequest => K::InvalidRequest,
        E::UnsupportedVersion => K::UnsupportedVersion,
        E::TooManyConnections | E::TooManyInFlight => K::ThrottlingQuotaExceeded,
        // Inside an answer a refusal is a topic's (a produce, fetch, offsets partition); a
        // request-level refusal is mapped by the type refused (`authz::refusal_of`).
        E::AuthorizationFailed => K::TopicAuthorizationFailed,
        _ => K::UnknownServerError,
    };
    k.code()
}

/// The Kafka error code of an eddy wire error (`None` is success).
pub fn of_wire(error: Option<&eddy_protocol::v1::Error>) -> i16 {
    error.map_or(0, |e| kafka_code(e.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_a_kafka_client_acts_on() {
        assert_eq!(kafka_code(ErrorCode::None), 0);
        assert_eq!(kafka_code(ErrorCode::UnknownTopic), 3);
        assert_eq!(kafka_code(ErrorCode::OffsetOutOfRange), 1);
        assert_eq!(kafka_code(ErrorCode::OutOfOrderSequence), 45);
        assert_eq!(kafka_code(ErrorCode::TopicAlreadyExists), 36);
        assert_eq!(kafka_code(ErrorCode::ProcessorExists), -1);
    }
}
