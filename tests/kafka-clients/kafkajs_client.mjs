// kafkajs against eddy's Kafka listener, for tests/tests/kafka_clients.rs.
//
// Commands (JSON lines on stdout as in common.py: bytes as hex, null as null, headers as
// [name, hex] pairs; kafkajs's own log goes to stderr; every wait has a deadline):
//
//   produce        --topic T --count N --seed S [--timestamp-base MS]
//                  to an existing topic T, the records of common.py's record(S, 0..N) (no null
//                  header values) with acks=all, in sends of up to 100; one "delivered" line per
//                  record (the record as sent, where it landed), then "done". Any failed send
//                  fails the run.
//   produce-file   --topic T --file F [--compression none|gzip]
//                  the records of F (JSON lines of key and value as hex or null, timestamp in
//                  ms, and an optional partition, as common.py's read_records) in file order,
//                  as produce sends them (acks=all, sends of up to 100, kafkajs's default
//                  partitioner — murmur2, as Kafka's Java client — for records without a
//                  partition), each send compressed with the codec given (gzip is the one
//                  kafkajs has built in). "delivered" lines (index = line number), then "done".
//   group-consume  --topic T --group G --count N [--session-ms MS]
//                  a subscribed group member that reads exactly N records from the group's
//                  committed offsets (earliest where none), prints each as a "record" line,
//                  commits exactly what it read after each batch ("committed"), then leaves the
//                  group and prints "closed".
//
// Common options: --bootstrap HOST:PORT (required), --timeout SECONDS (default 60).

import { readFileSync } from 'node:fs';

import { CompressionTypes, Kafka, Partitioners, logLevel } from 'kafkajs';

function emit(event, fields = {}) {
  const sorted = Object.fromEntries(
    Object.entries({ event, ...fields }).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
  process.stdout.write(`${JSON.stringify(sorted)}\n`);
}

function fail(message) {
  emit('error', { message });
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const args = {
    command, timeout: 60, sessionMs: 6000, timestampBase: Date.now(), seed: 0, compression: 'none',
  };
  const names = {
    '--bootstrap': ['bootstrap', String],
    '--topic': ['topic', String],
    '--group': ['group', String],
    '--count': ['count', Number],
    '--seed': ['seed', Number],
    '--timeout': ['timeout', Number],
    '--session-ms': ['sessionMs', Number],
    '--timestamp-base': ['timestampBase', Number],
    '--file': ['file', String],
    '--compression': ['compression', String],
  };
  for (let i = 0; i < rest.length; i += 2) {
    const known = names[rest[i]];
    if (!known || i + 1 >= rest.length) fail(`bad argument ${rest[i]}`);
    args[known[0]] = known[1](rest[i + 1]);
  }
  if (!['produce', 'produce-file', 'group-consume'].includes(command)) {
    fail(`unknown command ${command}`);
  }
  if (!args.bootstrap || !args.topic) fail('--bootstrap and --topic are required');
  return args;
}

const hex = (data) => (data === null || data === undefined ? null : Buffer.from(data).toString('hex'));

function headersJson(headers) {
  return Object.entries(headers ?? {}).map(([name, value]) => [name, hex(value)]);
}

// common.py's record(seed, i, timestamp_base, null_header_values=False).
function record(seed, i, timestampBase) {
  const key = i % 7 === 3 ? null : Buffer.from(`key-${seed}-${i}-\u00fc`);
  const value = i % 11 === 5 ? Buffer.alloc(0) : Buffer.from(`value ${i} of ${seed}: ${'x'.repeat(i % 50)} \u2603`);
  const headers = {};
  for (let j = 0; j < i % 3; j += 1) headers[`h${j}`] = Buffer.from(`v${i}-${j}-\u00e9`);
  return { key, value, headers, timestamp: String(timestampBase + i) };
}

function client(args) {
  const logCreator = () => ({ namespace, level, log }) => {
    process.stderr.write(`${JSON.stringify({ level, namespace, ...log })}\n`);
  };
  return new Kafka({
    clientId: 'eddy-kafkajs-test',
    brokers: [args.bootstrap],
    logLevel: logLevel.WARN,
    logCreator,
    retry: { retries: 5 },
  });
}

// The records of a JSON-lines file (see produce-file), each with its index.
function readRecords(path) {
  const unhex = (h) => (h === null || h === undefined ? null : Buffer.from(h, 'hex'));
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, index) => {
      const r = JSON.parse(line);
      return {
        index,
        key: unhex(r.key),
        value: unhex(r.value),
        headers: {},
        timestamp: String(r.timestamp),
        partition: r.partition ?? null,
      };
    });
}

// produce with records from a file: the same partitioner, sends and "delivered" lines.
async function produceFile(args) {
  const compressions = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP };
  const compression = compressions[args.compression];
  if (compression === undefined) fail(`compression ${args.compression}: none or gzip`);
  const kafka = client(args);
  const admin = kafka.admin();
  await admin.connect();
  const metadata = await admin.fetchTopicMetadata({ topics: [args.topic] });
  await admin.disconnect();
  const partitionMetadata = metadata.topics[0].partitions;
  const partitioner = Partitioners.DefaultPartitioner();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const all = readRecords(args.file);
  const chunk = 100;
  for (let start = 0; start < all.length; start += chunk) {
    const records = all.slice(start, start + chunk).map((r) => ({
      ...r,
      partition: r.partition ?? partitioner({ topic: args.topic, partitionMetadata, message: r }),
    }));
    const messages = records.map(({ partition, key, value, timestamp }) => ({
      partition, key, value, timestamp,
    }));
    const answers = await producer.send({ topic: args.topic, acks: -1, compression, messages });
    for (const line of placeRecords(answers, records)) emit('delivered', line);
  }
  await producer.disconnect();
  emit('done', { delivered: all.length });
}

async function produce(args) {
  const kafka = client(args);
  // kafkajs's default partitioner (murmur2 of the key, round-robin for null keys) picks each
  // record's partition here, and the record is sent to it explicitly: the answer to a send
  // gives one base offset per partition, so knowing each record's partition gives its offset.
  const admin = kafka.admin();
  await admin.connect();
  const metadata = await admin.fetchTopicMetadata({ topics: [args.topic] });
  await admin.disconnect();
  const partitionMetadata = metadata.topics[0].partitions;
  const partitioner = Partitioners.DefaultPartitioner();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const chunk = 100;
  for (let start = 0; start < args.count; start += chunk) {
    const records = [];
    for (let i = start; i < Math.min(args.count, start + chunk); i += 1) {
      const r = record(args.seed, i, args.timestampBase);
      const partition = partitioner({ topic: args.topic, partitionMetadata, message: r });
      records.push({ index: i, partition, ...r });
    }
    const messages = records.map(({ partition, key, value, headers, timestamp }) => ({
      partition, key, value, headers, timestamp,
    }));
    const answers = await producer.send({ topic: args.topic, acks: -1, messages });
    for (const line of placeRecords(answers, records)) emit('delivered', line);
  }
  await producer.disconnect();
  emit('done', { delivered: args.count });
}

// A send's records of one partition are appended in order from that partition's base offset.
function placeRecords(answers, records) {
  const next = new Map();
  for (const a of answers) {
    if (a.errorCode !== 0) fail(`send answered error ${a.errorCode} for partition ${a.partition}`);
    next.set(a.partition, BigInt(a.baseOffset));
  }
  return records.map((r) => {
    const offset = next.get(r.partition);
    if (offset === undefined) fail(`no answer for partition ${r.partition} of record ${r.index}`);
    next.set(r.partition, offset + 1n);
    return {
      index: r.index,
      partition: r.partition,
      offset: Number(offset),
      timestamp: Number(r.timestamp),
      key: hex(r.key),
      value: hex(r.value),
      headers: headersJson(r.headers),
    };
  });
}

async function groupConsume(args) {
  const consumer = client(args).consumer({
    groupId: args.group,
    sessionTimeout: args.sessionMs,
    heartbeatInterval: Math.max(100, Math.floor(args.sessionMs / 6)),
    maxWaitTimeInMs: 500,
  });
  await consumer.connect();
  await consumer.subscribe({ topic: args.topic, fromBeginning: true });
  let read = 0;
  let finished;
  const done = new Promise((resolve) => {
    finished = resolve;
  });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
      let last;
      for (const m of batch.messages) {
        if (read >= args.count || !isRunning() || isStale()) break;
        emit('record', {
          partition: batch.partition,
          offset: Number(m.offset),
          timestamp: Number(m.timestamp),
          key: hex(m.key),
          value: hex(m.value),
          headers: headersJson(m.headers),
        });
        read += 1;
        last = m.offset;
      }
      if (last !== undefined) {
        const offset = (BigInt(last) + 1n).toString();
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset }]);
        resolveOffset(last);
        emit('committed', { offsets: [[batch.partition, Number(offset)]] });
      }
      if (read >= args.count) finished();
    },
  });
  await done;
  await consumer.disconnect();
  emit('closed');
}

const args = parseArgs(process.argv.slice(2));
const timer = setTimeout(() => fail(`deadline of ${args.timeout} s passed`), args.timeout * 1000);
try {
  if (args.command === 'produce') await produce(args);
  else if (args.command === 'produce-file') await produceFile(args);
  else await groupConsume(args);
} catch (e) {
  fail(`${args.command}: ${e?.stack ?? e}`);
}
clearTimeout(timer);
