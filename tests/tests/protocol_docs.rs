//! The documents a client in another language is written from agree with the code:
//!
//! - `docs/protocol.md` has exactly one error-code table (header
//!   `| code | number | when it is sent | what a client does |`), sorted by number, with one row
//!   per variant of `eddy_protocol::v1::ErrorCode` (generated from `protocol/proto/eddy.proto`)
//!   under its proto name and number, a non-empty "when" and "what", and no other row. A code
//!   missing from either side, or a number that disagrees, fails the test by name.
//! - The partitioner's worked example in `docs/protocol.md` ("Partitioning") is what
//!   `eddy_client::partitioner` computes.
//! - The batch checksum named in `docs/format.md` is CRC-32C (check value `0xE3069283`), and
//!   the worked batch there is byte for byte what `eddy_storage`'s `BatchBuilder` builds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use eddy_client::partitioner::{murmur2, partition_for_key, to_positive};
use eddy_protocol::v1::ErrorCode;
use eddy_storage::batch::{BatchBuilder, Record};

/// The header row of the error-code table in docs/protocol.md.
const TABLE_HEADER: &str = "| code | number | when it is sent | what a client does |";

/// Error codes are searched for in `0..=MAX_CODE` (they are grouped by tens, far below this).
const MAX_CODE: i32 = 1000;

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every variant of `ErrorCode`: proto name → number.
fn enum_codes() -> BTreeMap<String, i32> {
    (0..=MAX_CODE)
        .filter_map(|n| ErrorCode::try_from(n).ok())
        .map(|code| (code.as_str_name().to_string(), code as i32))
        .collect()
}

/// One row of the error-code table.
#[derive(Debug)]
struct Row {
    /// 1-based line in docs/protocol.md.
    line: usize,
    name: String,
    number: i32,
}

/// The rows of the one error-code table in `text`, or why the table cannot be read.
fn table_rows(text: &str) -> Result<Vec<Row>, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let headers: Vec<usize> =
        (0..lines.len()).filter(|i| lines[*i].trim() == TABLE_HEADER).collect();
    let header = match headers[..] {
        [one] => one,
        [] => return Err(vec![format!("no table with the header `{TABLE_HEADER}`")]),
        _ => {
            let at: Vec<String> = headers.iter().map(|i| (i + 1).to_string()).collect();
            return Err(vec![format!(
                "{} tables with the header `{TABLE_HEADER}` (lines {}): keep one",
                headers.len(),
                at.join(", ")
            )]);
        }
    };
    let separator = lines.get(header + 1).map(|l| cells(l.trim())).unwrap_or_default();
    if separator.is_empty()
        || !separator.iter().all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':'))
    {
        return Err(vec![format!(
            "line {}: the error-code table's header is not followed by a `|---|---:|---|---|` row",
            header + 2
        )]);
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(header + 2) {
        let line = line.trim();
        if !line.starts_with('|') {
            break;
        }
        let n = i + 1;
        let cells = cells(line);
        let [name, number, when, what] = cells[..] else {
            problems.push(format!(
                "line {n}: {} cells, expected 4 (`| CODE_NAME | number | when | what |`; no `|` \
                 inside a cell)",
                cells.len()
            ));
            continue;
        };
        let name = name.trim_matches('`');
        let Ok(number) = number.parse::<i32>() else {
            problems.push(format!("line {n}: {name}: number {number:?} is not an integer"));
            continue;
        };
        if when.is_empty() || what.is_empty() {
            problems.push(format!("line {n}: {name}: the \"when\" or \"what\" cell is empty"));
        }
        rows.push(Row { line: n, name: name.to_string(), number });
    }
    if problems.is_empty() { Ok(rows) } else { Err(problems) }
}

/// The trimmed cells of a table row `| a | b |`.
fn cells(row: &str) -> Vec<&str> {
    let inner = row.strip_prefix('|').unwrap_or(row);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    inner.split('|').map(str::trim).collect()
}

/// What is wrong between the enum and the table (empty: they agree).
fn compare(codes: &BTreeMap<String, i32>, rows: &[Row]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut documented: BTreeMap<&str, &Row> = BTreeMap::new();
    let mut numbers = BTreeSet::new();
    for row in rows {
        if let Some(first) = documented.insert(row.name.as_str(), row) {
            problems
                .push(format!("{} has two rows (lines {} and {})", row.name, first.line, row.line));
        }
        if !numbers.insert(row.number) {
            problems.push(format!("line {}: number {} is used by two rows", row.line, row.number));
        }
    }
    for pair in rows.windows(2) {
        if pair[1].number <= pair[0].number {
            problems.push(format!(
                "line {}: {} ({}) comes after {} ({}): keep the rows sorted by number",
                pair[1].line, pair[1].name, pair[1].number, pair[0].name, pair[0].number
            ));
        }
    }
    for (name, number) in codes {
        match documented.get(name.as_str()) {
            None => problems.push(format!(
                "ErrorCode {name} = {number} is in eddy.proto but has no row in the table"
            )),
            Some(row) if row.number != *number => problems.push(format!(
                "{name}: the table says {} (line {}), eddy.proto says {number}",
                row.number, row.line
            )),
            Some(_) => {}
        }
    }
    for row in rows {
        if !codes.contains_key(&row.name) {
            problems.push(format!(
                "line {}: {} = {} is in the table but not in the ErrorCode enum of eddy.proto",
                row.line, row.name, row.number
            ));
        }
    }
    problems
}

#[test]
fn error_code_table_lists_every_code_of_the_enum() {
    let codes = enum_codes();
    assert!(codes.len() > 30 && codes.contains_key("NONE"), "ErrorCode read wrongly: {codes:?}");
    let problems = match table_rows(&doc("protocol.md")) {
        Ok(rows) => compare(&codes, &rows),
        Err(problems) => problems,
    };
    assert!(
        problems.is_empty(),
        "docs/protocol.md's error-code table disagrees with ErrorCode in protocol/proto/eddy.proto:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_table_check_names_what_disagrees() {
    let codes: BTreeMap<String, i32> =
        [("NONE", 0), ("UNKNOWN", 1), ("GONE", 7)].map(|(n, c)| (n.to_string(), c)).into();
    let text = format!(
        "intro\n\n{TABLE_HEADER}\n|---|---:|---|---|\n| NONE | 0 | never | nothing |\n\
         | UNKNOWN | 2 | a | b |\n| EXTRA | 5 | a | b |\n\nafter\n"
    );
    let rows = table_rows(&text).unwrap();
    let problems = compare(&codes, &rows).join("\n");
    assert!(problems.contains("GONE = 7 is in eddy.proto but has no row"), "{problems}");
    assert!(
        problems.contains("UNKNOWN: the table says 2 (line 6), eddy.proto says 1"),
        "{problems}"
    );
    assert!(
        problems.contains("EXTRA = 5 is in the table but not in the ErrorCode enum"),
        "{problems}"
    );

    let unsorted = format!(
        "{TABLE_HEADER}\n|---|---|---|---|\n| UNKNOWN | 1 | a | b |\n| NONE | 0 | a | b |\n"
    );
    let problems = compare(&codes, &table_rows(&unsorted).unwrap()).join("\n");
    assert!(problems.contains("NONE (0) comes after UNKNOWN (1)"), "{problems}");

    let twice = format!("{TABLE_HEADER}\n|---|---|---|---|\n\n{TABLE_HEADER}\n|---|---|---|---|\n");
    assert!(table_rows(&twice).unwrap_err()[0].contains("2 tables"));
    let stray_pipe = format!("{TABLE_HEADER}\n|---|---|---|---|\n| NONE | 0 | a | b | c |\n");
    assert!(table_rows(&stray_pipe).unwrap_err()[0].contains("5 cells, expected 4"));
}

#[test]
fn partitioner_worked_example_matches_the_client() {
    // docs/protocol.md, "Partitioning": key `foobar`, 4 partitions.
    let hash = murmur2(b"foobar");
    assert_eq!(hash, 0xD0E4_7BBE_u32 as i32);
    assert_eq!(hash, -790_332_482);
    assert_eq!(to_positive(hash), 0x50E4_7BBE);
    assert_eq!(to_positive(hash), 1_357_151_166);
    assert_eq!(partition_for_key(b"foobar", 4), 2);
    let text = doc("protocol.md");
    for quoted in ["0xD0E47BBE", "0x50E47BBE", "1 357 151 166 % 4 = **2**", "seed `0x9747b28c`"] {
        assert!(text.contains(quoted), "docs/protocol.md no longer says {quoted:?}");
    }
}

/// CRC-32C (Castagnoli), bit by bit: reflected polynomial 0x82F63B78, init and final XOR
/// 0xFFFFFFFF. Kafka's record batches use it.
fn crc32c_bitwise(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// The worked batch of docs/format.md: one record, key `k`, value `v`, at 1 700 000 000 000 ms.
const WORKED_BATCH: [u8; 70] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // base_offset
    0x00, 0x00, 0x00, 0x3a, // batch_length 58
    0xff, 0xff, 0xff, 0xff, // partition_leader_epoch -1
    0x02, // magic
    0xe9, 0x9b, 0x8d, 0xd8, // crc
    0x00, 0x00, // attributes
    0x00, 0x00, 0x00, 0x00, // last_offset_delta
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // base_timestamp
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // max_timestamp
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // producer_id
    0xff, 0xff, // producer_epoch
    0xff, 0xff, 0xff, 0xff, // base_sequence
    0x00, 0x00, 0x00, 0x01, // record_count
    0x10, 0x00, 0x00, 0x00, 0x02, b'k', 0x02, b'v', 0x00, // the record
];

#[test]
fn batch_checksums_are_crc32c_and_the_worked_batch_is_exact() {
    assert_eq!(crc32c_bitwise(b"123456789"), 0xE306_9283);
    let text = doc("format.md");
    for quoted in ["CRC-32C", "`0xE3069283`", "e9 9b 8d d8", "00 00 00 3a"] {
        assert!(text.contains(quoted), "docs/format.md no longer says {quoted:?}");
    }

    let mut builder = BatchBuilder::new();
    builder.push(Record {
        timestamp: 1_700_000_000_000,
        key: Some(b"k"),
        value: Some(b"v"),
        headers: &[],
    });
    let batch = builder.build();
    assert_eq!(&batch[..], &WORKED_BATCH[..], "the worked batch of docs/format.md");
    let stored = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
    assert_eq!(stored, crc32c_bitwise(&batch[21..]), "crc covers bytes 21..end");
}
