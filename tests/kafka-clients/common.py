"""Shared pieces of the Python Kafka client programs that tests/tests/kafka_clients.rs runs.

Every program prints one JSON object per line on stdout, each with an "event" field, and exits
non-zero (after an "error" line, also written to stderr) on any failure. Bytes are printed as
hex strings, a null key, value or header value as null; headers as [name, hex-or-null] pairs.
Every wait is bounded by a Deadline.
"""

import argparse
import json
import sys
import time

def emit(event, **fields):
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


def fail(message):
    emit("error", message=message)
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def hexs(data):
    return None if data is None else bytes(data).hex()


def headers_json(headers):
    return [[name, hexs(value)] for name, value in (headers or [])]


def record_json(partition, offset, timestamp, key, value, headers):
    return {
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "key": hexs(key),
        "value": hexs(value),
        "headers": headers_json(headers),
    }


def record(seed, i, timestamp_base, null_header_values=True):
    """Record i of stream `seed`: (key, value, headers, timestamp). Keys are sometimes null,
    values sometimes empty, headers zero to three (one with a null value where the client can
    send it); all text is UTF-8 with non-ASCII characters, so the CLI's JSON shows it as is.
    The timestamp is timestamp_base + i: the caller passes a recent time, as records older than
    a topic's retention are deleted."""
    key = None if i % 7 == 3 else f"key-{seed}-{i}-\u00fc".encode()
    value = b"" if i % 11 == 5 else f"value {i} of {seed}: {'x' * (i % 50)} \u2603".encode()
    headers = [(f"h{j}", f"v{i}-{j}-\u00e9".encode()) for j in range(i % 3)]
    if null_header_values and i % 5 == 0:
        headers.append(("nil", None))
    timestamp = timestamp_base + i
    return key, value, headers, timestamp


def read_records(path):
    """The records of a JSON-lines file a test wrote, one object per line: "key" and "value"
    as hex or null, "timestamp" in ms, and "partition" (optional: absent or null lets the
    client's partitioner choose). Returns (key, value, timestamp, partition) tuples."""
    def unhex(text):
        return None if text is None else bytes.fromhex(text)

    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                key, value = unhex(r["key"]), unhex(r["value"])
                records.append((key, value, r["timestamp"], r.get("partition")))
    return records


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end

    def check(self, what):
        if self.expired():
            fail(f"deadline passed: {what}")


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bootstrap", required=True, help="host:port of the Kafka listener")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds the whole run may take")
    p.add_argument(
        "--timestamp-base",
        type=int,
        default=int(time.time() * 1000),
        help="timestamp of record 0 in ms (default: now)",
    )
    return p
