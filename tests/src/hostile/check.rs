//! Checking the broker's answers against what each interior frame is owed.

use super::*;

/// Holds `response` to `expect`; the error says what differs.
pub fn check(response: &Response, expect: &Expect, target: &Target) -> Result<CheckNote, String> {
    let error = response.error.as_ref().map(v1::Error::error_code);
    let body = response.body.as_ref();
    let mismatch = || Err(format!("expected {expect:?}, got {response:?}"));
    match (expect, error, body) {
        (Expect::Nothing, _, _) => mismatch(),
        (Expect::Error(code), Some(got), None) if got == *code => Ok(CheckNote::Plain),
        (Expect::TargetMetadata, None, Some(response::Body::Metadata(m))) => {
            check_metadata(m, target)
        }
        (Expect::ApiVersions, None, Some(response::Body::ApiVersions(a))) => {
            let frame_limit = a.limits.as_ref().map(|l| l.max_frame_bytes);
            if a.version == 1 && frame_limit == Some(target.max_frame_bytes) {
                Ok(CheckNote::Plain)
            } else {
                mismatch()
            }
        }
        (Expect::TopicNames, None, Some(response::Body::ListTopics(l))) => {
            // The broker's own internal topics (`__consumer_offsets`) are listed too.
            let user: Vec<&String> = l.names.iter().filter(|n| !n.starts_with("__")).collect();
            if user == [&target.topic] { Ok(CheckNote::Plain) } else { mismatch() }
        }
        (Expect::Produce(want), None, Some(response::Body::Produce(p))) => {
            let got: Vec<_> = p
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|r| (t.topic.clone(), r.partition, code_of(r.error.as_ref())))
                })
                .collect();
            if &got == want { Ok(CheckNote::Plain) } else { mismatch() }
        }
        (Expect::Fetch(want), None, Some(response::Body::Fetch(f))) => check_fetch(f, want, target),
        (Expect::ListOffsets(want), None, Some(response::Body::ListOffsets(l))) => {
            check_list_offsets(l, want)
        }
        _ => mismatch(),
    }
}

/// Something [`check`] saw that the caller may want to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckNote {
    Plain,
    /// `n` unknown `OffsetSpec` values were answered as LATEST, `m` with MALFORMED_REQUEST.
    UnknownSpecs {
        as_latest: u64,
        refused: u64,
    },
}

fn code_of(error: Option<&v1::Error>) -> ErrorCode {
    error.map_or(ErrorCode::None, v1::Error::error_code)
}

fn check_metadata(m: &v1::MetadataResponse, target: &Target) -> Result<CheckNote, String> {
    let [topic] = &m.topics[..] else { return Err(format!("metadata for one topic holds {m:?}")) };
    let offsets: Vec<_> =
        topic.partitions.iter().map(|p| (p.partition, p.log_start_offset, p.next_offset)).collect();
    let want: Vec<_> =
        target.next_offsets.iter().enumerate().map(|(p, &next)| (p as u32, 0, next)).collect();
    if topic.name == target.topic && topic.error.is_none() && offsets == want {
        Ok(CheckNote::Plain)
    } else {
        Err(format!("metadata moved: want (partition, start, next) {want:?}, got {m:?}"))
    }
}

fn check_fetch(
    f: &v1::FetchResponse,
    want: &[(String, u32, FetchOutcome)],
    target: &Target,
) -> Result<CheckNote, String> {
    let got: Vec<_> =
        f.topics.iter().flat_map(|t| t.partitions.iter().map(move |r| (&t.topic, r))).collect();
    if got.len() != want.len() {
        return Err(format!(
            "fetch answered {} partitions for {} asked: {f:?}",
            got.len(),
            want.len()
        ));
    }
    for ((topic, result), (want_topic, want_partition, outcome)) in got.into_iter().zip(want) {
        let at = format!("fetch {want_topic}-{want_partition}");
        if topic != want_topic || result.partition != *want_partition {
            return Err(format!("{at}: answered for {topic}-{}", result.partition));
        }
        let code = code_of(result.error.as_ref());
        let ok = match outcome {
            FetchOutcome::Error(want_code) => code == *want_code && result.records.is_empty(),
            FetchOutcome::Empty => {
                code == ErrorCode::None
                    && result.records.is_empty()
                    && result.high_watermark == target.next_offsets[*want_partition as usize]
            }
            FetchOutcome::FirstBatch => {
                let first = &target.first_batches[*want_partition as usize];
                code == ErrorCode::None
                    && result.records.starts_with(first)
                    && result.high_watermark == target.next_offsets[*want_partition as usize]
                    && result.log_start_offset == 0
            }
        };
        if !ok {
            return Err(format!(
                "{at}: expected {outcome:?}, got error {code:?}, high watermark {}, {} record bytes",
                result.high_watermark,
                result.records.len()
            ));
        }
    }
    Ok(CheckNote::Plain)
}

fn check_list_offsets(
    l: &v1::ListOffsetsResponse,
    want: &[(String, u32, OffsetsOutcome)],
) -> Result<CheckNote, String> {
    let got: Vec<_> =
        l.topics.iter().flat_map(|t| t.partitions.iter().map(move |r| (&t.topic, r))).collect();
    if got.len() != want.len() {
        return Err(format!(
            "list_offsets answered {} partitions for {} asked: {l:?}",
            got.len(),
            want.len()
        ));
    }
    let (mut as_latest, mut refused) = (0, 0);
    for ((topic, result), (want_topic, want_partition, outcome)) in got.into_iter().zip(want) {
        let code = code_of(result.error.as_ref());
        let ok = topic == want_topic
            && result.partition == *want_partition
            && match *outcome {
                OffsetsOutcome::Error(want_code) => code == want_code,
                OffsetsOutcome::Offset(offset) => {
                    code == ErrorCode::None && result.offset == offset
                }
                OffsetsOutcome::UnknownSpec { latest } => {
                    if code == ErrorCode::MalformedRequest {
                        refused += 1;
                        true
                    } else {
                        as_latest += 1;
                        code == ErrorCode::None && result.offset == latest
                    }
                }
            };
        if !ok {
            return Err(format!(
                "list_offsets {want_topic}-{want_partition}: expected {outcome:?}, got {topic}: {result:?}"
            ));
        }
    }
    Ok(CheckNote::UnknownSpecs { as_latest, refused })
}
