"""confluent-kafka (librdkafka) producers and consumers under eddy's byte-rate quotas, for
tests/tests/security_quotas.rs.

Commands (JSON lines, see common.py; every loop has a deadline):

  produce --topic T --client-id C --seconds S --value-bytes B
          produces B-byte values as fast as librdkafka takes them for S seconds, then flushes:
          "done" with the bytes delivered, the seconds taken, and the throttle events
          librdkafka reported (throttle_cb: the broker's throttle_time_ms) with their total ms.
  consume --topic T --client-id C --max-bytes N
          reads partition 0 from the start until N bytes of values arrived: "done" with the
          bytes, seconds and throttle events.
"""

import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from common import Deadline, emit, fail, parser


class Throttles:
    def __init__(self):
        self.events = 0
        self.total_ms = 0

    def __call__(self, event):
        # A ThrottleEvent: throttle_time in seconds, for one broker's answer.
        if event.throttle_time > 0:
            self.events += 1
            self.total_ms += int(event.throttle_time * 1000)


def produce(args, deadline):
    throttles = Throttles()
    delivered = {"bytes": 0, "errors": 0}

    def on_delivery(err, msg):
        if err is None:
            delivered["bytes"] += len(msg.value())
        else:
            delivered["errors"] += 1

    p = Producer({
        "bootstrap.servers": args.bootstrap,
        "client.id": args.client_id,
        "linger.ms": 5,
        # A small queue: what is queued when the run ends is flushed at the quota's pace.
        "queue.buffering.max.kbytes": 1024,
        # Requests small beside the quota, so each one's throttle is below the broker's cap
        # (samples × window) and the measurement is not in a few big steps.
        "batch.size": 65536,
        "throttle_cb": throttles,
        "error_cb": lambda e: emit("client-error", error=str(e)),
    })
    value = b"q" * args.value_bytes
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        deadline.check("producing")
        try:
            p.produce(args.topic, value, on_delivery=on_delivery)
        except BufferError:
            p.poll(0.05)
            continue
        p.poll(0)
    left = p.flush(deadline.left())
    if left:
        fail(f"{left} records not delivered before the deadline")
    if delivered["errors"]:
        fail(f"{delivered['errors']} records failed")
    emit("done", bytes=delivered["bytes"], seconds=time.monotonic() - start,
         throttles=throttles.events, throttle_ms=throttles.total_ms)


def consume(args, deadline):
    throttles = Throttles()
    c = Consumer({
        "bootstrap.servers": args.bootstrap,
        "client.id": args.client_id,
        "group.id": f"quota-{args.client_id}",
        "enable.auto.commit": False,
        "throttle_cb": throttles,
        # Small fetches, so the quota is measured over many of them, not one big answer.
        "fetch.max.bytes": 262144,
        "message.max.bytes": 262144,
        "max.partition.fetch.bytes": 131072,
    })
    c.assign([TopicPartition(args.topic, 0, 0)])
    got = 0
    start = time.monotonic()
    while got < args.max_bytes:
        deadline.check(f"consuming ({got} bytes so far)")
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        got += len(msg.value())
    seconds = time.monotonic() - start
    # The throttle of the last answers arrives with them; give the callback a last chance.
    c.poll(0.1)
    c.close()
    emit("done", bytes=got, seconds=seconds, throttles=throttles.events,
         throttle_ms=throttles.total_ms)


def main():
    p = parser(__doc__)
    p.add_argument("command", choices=["produce", "consume"])
    p.add_argument("--topic", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--value-bytes", type=int, default=1000)
    p.add_argument("--max-bytes", type=int, default=0)
    args = p.parse_args()
    deadline = Deadline(args.timeout)
    {"produce": produce, "consume": consume}[args.command](args, deadline)


if __name__ == "__main__":
    main()
