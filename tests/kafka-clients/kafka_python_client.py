"""kafka-python against eddy's Kafka listener, for tests/tests/kafka_clients.rs.

Commands (all print JSON lines, see common.py; every loop has a deadline):

  produce        --topic T --count N --seed S
                 records common.record(S, 0..N) (no null header values: kafka-python cannot
                 send them) with acks=all; one "delivered" line per record (the record as sent,
                 where it landed), then "done". Any failed send fails the run.
  produce-file   --topic T --file F [--compression C]
                 the records of F (common.read_records: JSON lines of key, value, timestamp and
                 an optional partition) in file order with acks=all, compression C (none, or
                 gzip: the codecs of the Python standard library); records without a partition
                 go where kafka-python's partitioner (murmur2, as Kafka's Java client) puts
                 them. "delivered" lines (index = line number) as for produce, then "done".
  group-consume  --topic T --group G --count N [--session-ms MS]
                 a subscribed group member that reads exactly N records from the group's
                 committed offsets (earliest where none), prints each as a "record" line,
                 commits exactly what it read after each poll ("committed"), then leaves the
                 group and prints "closed".
  admin          --topic T
                 KafkaAdminClient: create_topics (3 partitions, with a config), list_topics,
                 describe_topics, describe_configs, delete_topics; one line per step.
"""

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.structs import OffsetAndMetadata

from common import Deadline, emit, fail, parser, read_records, record, record_json


def produce(args, deadline):
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        linger_ms=5,
        request_timeout_ms=int(min(30.0, deadline.left()) * 1000),
    )
    sent = []
    for i in range(args.count):
        deadline.check(f"producing record {i}")
        key, value, headers, timestamp = record(
            args.seed, i, args.timestamp_base, null_header_values=False
        )
        future = producer.send(
            args.topic, key=key, value=value, headers=headers, timestamp_ms=timestamp
        )
        sent.append((i, key, value, headers, timestamp, future))
    producer.flush(timeout=deadline.left())
    for i, key, value, headers, timestamp, future in sent:
        try:
            meta = future.get(timeout=deadline.left())
        except Exception as e:  # noqa: BLE001 - any failure of the send is reported as it is
            fail(f"record {i}: {e!r}")
        if meta.timestamp != timestamp:
            fail(f"record {i}: acknowledged with timestamp {meta.timestamp}, sent {timestamp}")
        fields = record_json(meta.partition, meta.offset, timestamp, key, value, headers)
        emit("delivered", index=i, **fields)
    producer.close(timeout=deadline.left())
    emit("done", delivered=args.count)


def produce_file(args, deadline):
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        linger_ms=5,
        compression_type=None if args.compression == "none" else args.compression,
        request_timeout_ms=int(min(30.0, deadline.left()) * 1000),
    )
    sent = []
    for i, (key, value, timestamp, partition) in enumerate(read_records(args.file)):
        deadline.check(f"producing record {i}")
        future = producer.send(
            args.topic, key=key, value=value, partition=partition, timestamp_ms=timestamp
        )
        sent.append((i, key, value, timestamp, future))
    producer.flush(timeout=deadline.left())
    for i, key, value, timestamp, future in sent:
        try:
            meta = future.get(timeout=deadline.left())
        except Exception as e:  # noqa: BLE001 - any failure of the send is reported as it is
            fail(f"record {i}: {e!r}")
        if meta.timestamp != timestamp:
            fail(f"record {i}: acknowledged with timestamp {meta.timestamp}, sent {timestamp}")
        fields = record_json(meta.partition, meta.offset, timestamp, key, value, [])
        emit("delivered", index=i, **fields)
    producer.close(timeout=deadline.left())
    emit("done", delivered=len(sent))


def group_consume(args, deadline):
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_ms,
        heartbeat_interval_ms=max(100, args.session_ms // 6),
    )
    read = 0
    while read < args.count:
        deadline.check(f"reading: {read} of {args.count} records")
        batches = consumer.poll(timeout_ms=500, max_records=args.count - read)
        taken = {}
        for tp, msgs in batches.items():
            for msg in msgs:
                fields = record_json(
                    msg.partition, msg.offset, msg.timestamp, msg.key, msg.value, msg.headers
                )
                emit("record", **fields)
                taken[tp] = msg.offset + 1
                read += 1
        if taken:
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in taken.items()})
            emit("committed", offsets=sorted([tp.partition, o] for tp, o in taken.items()))
    consumer.close(autocommit=False)
    emit("closed")


def admin(args, deadline):
    client = KafkaAdminClient(
        bootstrap_servers=args.bootstrap,
        request_timeout_ms=int(min(30.0, deadline.left()) * 1000),
    )
    topic = args.topic
    new = NewTopic(topic, 3, 1, topic_configs={"retention.ms": "3600000"})
    answer = client.create_topics([new])
    errors = [code for _, code, *_ in answer.topic_errors if code != 0]
    emit("created", topic=topic, errors=errors)
    emit("listed", topics=sorted(client.list_topics()))
    described = client.describe_topics([topic])
    emit(
        "described",
        topics={t["topic"]: len(t["partitions"]) for t in described},
        errors=[t["error_code"] for t in described],
    )
    configs = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries = {e[0]: e[1] for r in configs for res in r.resources for e in res[4]}
    emit("configs", configs=entries)
    answer = client.delete_topics([topic])
    emit("deleted", topic=topic, errors=[code for _, code, *_ in answer.topic_error_codes if code])
    client.close()


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("command", choices=["produce", "produce-file", "group-consume", "admin"])
    p.add_argument("--topic", required=True)
    p.add_argument("--group")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--session-ms", type=int, default=6000)
    p.add_argument("--file")
    p.add_argument("--compression", default="none")
    args = p.parse_args()
    deadline = Deadline(args.timeout)
    try:
        commands = {
            "produce": produce,
            "produce-file": produce_file,
            "group-consume": group_consume,
            "admin": admin,
        }
        commands[args.command](args, deadline)
    except Exception as e:  # noqa: BLE001 - every failure ends the run with its description
        fail(f"{args.command}: {e!r}")


if __name__ == "__main__":
    main()
