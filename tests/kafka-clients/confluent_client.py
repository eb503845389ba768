"""confluent-kafka (librdkafka) against eddy's Kafka listener, for tests/tests/kafka_clients.rs.

Commands (all print JSON lines, see common.py; every loop has a deadline):

  produce    --topic T --count N --seed S [--idempotent] [--compression C]
             records common.record(S, 0..N) with acks=all; one "delivered" line per delivery
             report (the record as sent, where it landed), then "done"; any failed report fails.
  produce-file  --topic T --file F [--idempotent] [--compression C] [--partitioner P]
             the records of F (common.read_records: JSON lines of key, value, timestamp and an
             optional partition) in file order with acks=all; records without a partition go
             where librdkafka's partitioner P puts them (default murmur2_random, Kafka's Java
             partitioner, as eddy's client does). "delivered" lines (index = line number) as
             for produce, then "done".
  consume    --topic T --count N
             assigns every partition from the earliest offset (no group) and prints the first N
             records it reads as "record" lines, then "end" with each partition's high watermark.
  member     --topic T --group G --session-ms MS
             a subscribed group member: "assigned"/"revoked"/"lost" on rebalances, a "record"
             line per record, a synchronous commit after each batch ("committed", or
             "commit-failed" with the error). Runs until SIGTERM (then closes and prints
             "closed") or the deadline (a failure).
  committed  --topic T --group G
             one "committed" line per partition: the group's committed offset (-1001 when none)
             and the partition's low and high watermarks.
  admin      --topic T
             AdminClient: create_topics with configs, the same again (must be refused),
             describe_topics, describe_configs, delete_topics, describe_topics again; one line
             per step with what the broker answered.
  list_topics
             AdminClient.list_topics() for every topic: "listed" with topics and brokers.

-X KEY=VALUE (repeatable) adds a librdkafka setting to produce's and consume's clients, for
example -X security.protocol=SSL -X ssl.ca.location=ca.pem (tests/tests/security_tls.rs).
"""

import signal

from confluent_kafka import Consumer, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from common import Deadline, emit, fail, parser, read_records, record, record_json


def settings(args, config):
    """config with the -X KEY=VALUE settings added."""
    for item in args.extra:
        key, _, value = item.partition("=")
        config[key] = value
    return config


def msg_json(msg):
    _, timestamp = msg.timestamp()
    return record_json(
        msg.partition(), msg.offset(), timestamp, msg.key(), msg.value(), msg.headers()
    )


def produce(args, deadline):
    config = {
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": args.idempotent,
        "compression.type": args.compression,
        "linger.ms": 5,
        "message.timeout.ms": int(deadline.left() * 1000),
    }
    producer = Producer(settings(args, config))
    failed = []

    def on_delivery(index, key, value, headers, timestamp):
        def report(err, msg):
            if err is not None:
                failed.append(index)
                emit("failed", index=index, error=str(err))
                return
            # The report names where the record landed; what was sent is printed as sent.
            _, landed_timestamp = msg.timestamp()
            if (msg.key(), msg.value(), landed_timestamp) != (key, value, timestamp):
                failed.append(index)
                emit("failed", index=index, error=f"delivery report differs: {msg_json(msg)}")
                return
            fields = record_json(msg.partition(), msg.offset(), timestamp, key, value, headers)
            emit("delivered", index=index, **fields)

        return report

    for i in range(args.count):
        key, value, headers, timestamp = record(args.seed, i, args.timestamp_base)
        while True:
            deadline.check(f"producing record {i}")
            try:
                producer.produce(
                    args.topic,
                    value=value,
                    key=key,
                    headers=headers,
                    timestamp=timestamp,
                    on_delivery=on_delivery(i, key, value, headers, timestamp),
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(deadline.left())
    if left:
        fail(f"{left} records still undelivered at the deadline")
    if failed:
        fail(f"{len(failed)} delivery reports failed, the first for record {failed[0]}")
    emit("done", delivered=args.count)


def produce_file(args, deadline):
    config = {
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": args.idempotent,
        "compression.type": args.compression,
        "partitioner": args.partitioner,
        "linger.ms": 5,
        "message.timeout.ms": int(deadline.left() * 1000),
    }
    producer = Producer(config)
    failed = []

    def on_delivery(index, key, value, timestamp):
        def report(err, msg):
            if err is not None:
                failed.append(index)
                emit("failed", index=index, error=str(err))
                return
            _, landed_timestamp = msg.timestamp()
            if (msg.key(), msg.value(), landed_timestamp) != (key, value, timestamp):
                failed.append(index)
                emit("failed", index=index, error=f"delivery report differs: {msg_json(msg)}")
                return
            fields = record_json(msg.partition(), msg.offset(), timestamp, key, value, [])
            emit("delivered", index=index, **fields)

        return report

    records = read_records(args.file)
    for i, (key, value, timestamp, partition) in enumerate(records):
        where = {} if partition is None else {"partition": partition}
        while True:
            deadline.check(f"producing record {i}")
            try:
                producer.produce(
                    args.topic,
                    value=value,
                    key=key,
                    timestamp=timestamp,
                    on_delivery=on_delivery(i, key, value, timestamp),
                    **where,
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(deadline.left())
    if left:
        fail(f"{left} records still undelivered at the deadline")
    if failed:
        fail(f"{len(failed)} delivery reports failed, the first for record {failed[0]}")
    emit("done", delivered=len(records))


def partitions_of(client, topic, deadline):
    metadata = client.list_topics(topic, timeout=deadline.left())
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        fail(f"topic {topic}: {found.error if found else 'not in the metadata'}")
    return sorted(found.partitions)


def consume(args, deadline):
    consumer = Consumer(
        settings(
            args,
            {
                "bootstrap.servers": args.bootstrap,
                "group.id": "confluent-client-assign",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    parts = partitions_of(consumer, args.topic, deadline)
    consumer.assign([TopicPartition(args.topic, p, -2) for p in parts])
    read = 0
    while read < args.count:
        deadline.check(f"reading: {read} of {args.count} records")
        for msg in consumer.consume(min(500, args.count - read), timeout=0.5):
            if msg.error() is not None:
                fail(f"consume: {msg.error()}")
            emit("record", **msg_json(msg))
            read += 1
    watermarks = {
        str(p): consumer.get_watermark_offsets(
            TopicPartition(args.topic, p), timeout=deadline.left()
        )[1]
        for p in parts
    }
    emit("end", watermarks=watermarks)
    consumer.close()


def member(args, deadline):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    if args.group_protocol == "classic":
        config["session.timeout.ms"] = args.session_ms
        config["heartbeat.interval.ms"] = max(100, args.session_ms // 6)
    else:
        # KIP-848: the broker owns session timeout and heartbeat interval.
        config["group.protocol"] = args.group_protocol
    consumer = Consumer(config)

    def parts(partitions):
        return sorted(p.partition for p in partitions)

    consumer.subscribe(
        [args.topic],
        on_assign=lambda _, ps: emit("assigned", partitions=parts(ps)),
        on_revoke=lambda _, ps: emit("revoked", partitions=parts(ps)),
        on_lost=lambda _, ps: emit("lost", partitions=parts(ps)),
    )
    while not stop:
        deadline.check("still a member at the deadline (no SIGTERM came)")
        msgs = consumer.consume(500, timeout=0.2)
        for msg in msgs:
            if msg.error() is not None:
                fail(f"consume: {msg.error()}")
            emit("record", partition=msg.partition(), offset=msg.offset())
        if not msgs:
            continue
        try:
            committed = consumer.commit(asynchronous=False)
        except KafkaException as e:
            emit("commit-failed", error=str(e.args[0]))
            continue
        emit("committed", offsets=sorted([tp.partition, tp.offset] for tp in committed))
    consumer.close()
    emit("closed")


def committed(args, deadline):
    consumer = Consumer(
        {"bootstrap.servers": args.bootstrap, "group.id": args.group, "enable.auto.commit": False}
    )
    parts = partitions_of(consumer, args.topic, deadline)
    offsets = consumer.committed(
        [TopicPartition(args.topic, p) for p in parts], timeout=deadline.left()
    )
    for tp in offsets:
        if tp.error is not None:
            fail(f"committed offset of partition {tp.partition}: {tp.error}")
        low, high = consumer.get_watermark_offsets(tp, timeout=deadline.left())
        emit("committed", partition=tp.partition, offset=tp.offset, low=low, high=high)
    consumer.close()


def describe_topic(client, topic, deadline):
    """describe_topics for one topic: ("described", {...}) or ("error", name of the error)."""
    described = client.describe_topics(TopicCollection([topic]), request_timeout=deadline.left())
    try:
        description = described[topic].result(deadline.left())
    except KafkaException as e:
        return {"error": e.args[0].name()}
    partitions = [
        {"id": p.id, "leader": p.leader.id, "replicas": [r.id for r in p.replicas]}
        for p in description.partitions
    ]
    return {"topic": description.name, "partitions": partitions}


def admin(args, deadline):
    client = AdminClient({"bootstrap.servers": args.bootstrap})
    topic = args.topic
    configs = {"cleanup.policy": "compact", "retention.ms": "3600000"}
    new = NewTopic(topic, num_partitions=3, replication_factor=1, config=configs)
    client.create_topics([new], request_timeout=deadline.left())[topic].result(deadline.left())
    emit("created", topic=topic)

    again = client.create_topics([new], request_timeout=deadline.left())[topic]
    try:
        again.result(deadline.left())
        emit("created-again", error=None)
    except KafkaException as e:
        emit("created-again", error=e.args[0].name())

    emit("described", **describe_topic(client, topic, deadline))

    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = client.describe_configs([resource], request_timeout=deadline.left())
    entries = entries[resource].result(deadline.left())
    emit("configs", configs={name: entry.value for name, entry in entries.items()})

    client.delete_topics([topic], request_timeout=deadline.left())[topic].result(deadline.left())
    emit("deleted", topic=topic)

    emit("described-after", **describe_topic(client, topic, deadline))


def list_topics(args, deadline):
    client = AdminClient({"bootstrap.servers": args.bootstrap})
    metadata = client.list_topics(timeout=deadline.left())
    topics = {name: len(t.partitions) for name, t in metadata.topics.items()}
    brokers = [f"{b.host}:{b.port}" for b in metadata.brokers.values()]
    emit("listed", topics=topics, brokers=brokers)


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "command",
        choices=[
            "produce", "produce-file", "consume", "member", "committed", "admin", "list_topics"
        ],
    )
    p.add_argument("--topic", required=True)
    p.add_argument("--group")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--idempotent", action="store_true")
    p.add_argument("--compression", default="none")
    p.add_argument("--session-ms", type=int, default=6000)
    p.add_argument("--group-protocol", default="classic", choices=["classic", "consumer"])
    p.add_argument("--file")
    p.add_argument("--partitioner", default="murmur2_random")
    p.add_argument("-X", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    deadline = Deadline(args.timeout)
    try:
        globals()[args.command.replace("-", "_")](args, deadline)
    except KafkaException as e:
        fail(f"{args.command}: {e.args[0]}")


if __name__ == "__main__":
    main()
