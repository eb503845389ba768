"""confluent-kafka (librdkafka) transactions against eddy's Kafka listener, for
tests/tests/kafka_transactions.rs.

Commands (all print JSON lines, see common.py; every loop has a deadline). Values are text.

  transactions  --topic T --partitions P --count N --abort-every K --txn-id ID
             N transactions; transaction i writes "t{i}-p{p}" to every partition p, and is
             aborted when (i + 1) % K == 0, else committed: a "committed" or "aborted" line each
             (with its values), then "done".
  commit-one --topic T --txn-id ID --value V [--partition P]
             one transaction writing V, committed: "committed" once EndTxn is acknowledged.
  open       --topic T --txn-id ID --value V --go-file F [--txn-timeout-ms MS]
             begins a transaction, writes V (delivered), prints "open"; then waits until file F
             exists and tries to commit: "committed" or "commit-failed" with the error.
  consume    --topic T --isolation read_committed|read_uncommitted
             every partition from the start, until each reports its end: a "record" line per
             record (partition, offset, value), then "end".
  transform  --topic IN --output OUT --group G --txn-id ID [--abort]
             consume-transform-produce: a group member reads what IN holds, writes each value
             upper-cased to OUT and sends its positions as the group's offsets, all in one
             transaction, committed (or aborted with --abort): "committed"/"aborted" with the
             offsets sent.
  fence      --topic T --txn-id ID
             producer A begins a transaction and writes "a-open"; producer B with the same id
             initialises (fencing A); A's commit then fails ("a-fenced" with the error, and
             whether it is fatal); B commits "b-committed": "b-committed".
"""

import os
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from common import Deadline, emit, fail, parser


def producer(args, deadline, txn_id, timeout_ms=60000):
    config = {
        "bootstrap.servers": args.bootstrap,
        "transactional.id": txn_id,
        "linger.ms": 5,
        "transaction.timeout.ms": timeout_ms,
        # librdkafka requires it no longer than the transaction timeout.
        "message.timeout.ms": min(int(deadline.left() * 1000), timeout_ms),
    }
    p = Producer(config)
    p.init_transactions(deadline.left())
    return p


def send(p, topic, value, partition, deadline):
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(str(err))

    p.produce(topic, value=value.encode(), partition=partition, on_delivery=report)
    if p.flush(deadline.left()) != 0:
        fail("records not delivered by the deadline")
    if failed:
        raise KafkaException(KafkaError(KafkaError._FAIL, failed[0]))


def transactions(args, deadline):
    p = producer(args, deadline, args.txn_id)
    for i in range(args.count):
        deadline.check(f"transaction {i}")
        p.begin_transaction()
        values = [f"t{i}-p{q}" for q in range(args.partitions)]
        for q, value in enumerate(values):
            p.produce(args.topic, value=value.encode(), partition=q)
        if (i + 1) % args.abort_every == 0:
            p.flush(deadline.left())
            p.abort_transaction(deadline.left())
            emit("aborted", index=i, values=values)
        else:
            p.commit_transaction(deadline.left())
            emit("committed", index=i, values=values)
    emit("done")


def commit_one(args, deadline):
    p = producer(args, deadline, args.txn_id)
    p.begin_transaction()
    send(p, args.topic, args.value, args.partition, deadline)
    p.commit_transaction(deadline.left())
    emit("committed", value=args.value)


def open_txn(args, deadline):
    p = producer(args, deadline, args.txn_id, args.txn_timeout_ms or 60000)
    p.begin_transaction()
    send(p, args.topic, args.value, args.partition, deadline)
    emit("open", value=args.value)
    while not os.path.exists(args.go_file):
        deadline.check("waiting for the go file")
        time.sleep(0.05)
    try:
        p.commit_transaction(deadline.left())
        emit("committed", value=args.value)
    except KafkaException as e:
        err = e.args[0]
        emit("commit-failed", error=err.name(), fatal=err.fatal(), abortable=err.txn_requires_abort())


def consume(args, deadline):
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "isolation.level": args.isolation,
            "enable.partition.eof": True,
        }
    )
    meta = consumer.list_topics(args.topic, timeout=deadline.left())
    parts = sorted(meta.topics[args.topic].partitions)
    consumer.assign([TopicPartition(args.topic, q, 0) for q in parts])
    at_end = set()
    while len(at_end) < len(parts):
        deadline.check(f"reading to the end: {sorted(at_end)} of {parts}")
        for msg in consumer.consume(500, timeout=0.2):
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                fail(f"consume: {msg.error()}")
            at_end.discard(msg.partition())
            emit("record", partition=msg.partition(), offset=msg.offset(), value=msg.value().decode())
    consumer.close()
    emit("end")


def transform(args, deadline):
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([args.topic])
    p = producer(args, deadline, args.txn_id)
    values = []
    eof = set()
    assigned = []
    while not assigned or len(eof) < len(assigned):
        deadline.check("reading the input")
        for msg in consumer.consume(500, timeout=0.2):
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(msg.partition())
                    continue
                fail(f"consume: {msg.error()}")
            values.append(msg.value().decode())
        assigned = consumer.assignment()
    p.begin_transaction()
    for value in values:
        p.produce(args.output, value=value.upper().encode())
    positions = consumer.position(consumer.assignment())
    p.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), deadline.left())
    offsets = sorted([tp.partition, tp.offset] for tp in positions)
    if args.abort:
        p.abort_transaction(deadline.left())
        emit("aborted", offsets=offsets, values=values)
    else:
        p.commit_transaction(deadline.left())
        emit("committed", offsets=offsets, values=values)
    consumer.close()


def fence(args, deadline):
    a = producer(args, deadline, args.txn_id)
    a.begin_transaction()
    send(a, args.topic, "a-open", 0, deadline)
    b = producer(args, deadline, args.txn_id)
    try:
        send(a, args.topic, "a-late", 0, deadline)
        a.commit_transaction(deadline.left())
        emit("a-committed")
    except Exception as e:  # librdkafka's fatal error may surface from flush wrapped
        cause = e if isinstance(e, KafkaException) else e.__cause__
        if not isinstance(cause, KafkaException):
            fail(f"producer A failed, but not with a Kafka error: {e!r}")
        err = cause.args[0]
        emit("a-fenced", error=err.name(), fatal=err.fatal())
    b.begin_transaction()
    send(b, args.topic, "b-committed", 0, deadline)
    b.commit_transaction(deadline.left())
    emit("b-committed")


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "command", choices=["transactions", "commit-one", "open", "consume", "transform", "fence"]
    )
    p.add_argument("--topic", required=True)
    p.add_argument("--output")
    p.add_argument("--group")
    p.add_argument("--txn-id")
    p.add_argument("--value")
    p.add_argument("--partition", type=int, default=0)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--abort-every", type=int, default=3)
    p.add_argument("--txn-timeout-ms", type=int)
    p.add_argument("--go-file")
    p.add_argument("--isolation", default="read_committed")
    p.add_argument("--abort", action="store_true")
    args = p.parse_args()
    deadline = Deadline(args.timeout)
    command = "open_txn" if args.command == "open" else args.command.replace("-", "_")
    try:
        globals()[command](args, deadline)
    except KafkaException as e:
        fail(f"{args.command}: {e.args[0]}")


if __name__ == "__main__":
    main()
