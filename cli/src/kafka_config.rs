//! `--kafka-config FILE`: the Kafka client settings of `processor run`, `processor verify` and
//! `sql run` over a Kafka-protocol cluster, as Kafka's own tools take `--command-config` — a
//! properties file of librdkafka settings (`security.protocol`, `sasl.mechanism`,
//! `sasl.username`, `sasl.password`, `ssl.ca.location`, ...), so that a password never appears
//! in an argument (`ps`). Lines are `key=value` (spaces around either trimmed); blank lines
//! and lines starting with `#` or `!` are skipped. `bootstrap.servers` and `client.id` are
//! eddy's to set (`--kafka`, one per client) and refused here.

use std::path::Path;

use anyhow::{Context, Result, bail};
use eddy_cluster::ClusterConfig;

/// Largest settings file read: a few dozen lines in practice.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The cluster settings for `bootstrap`, with the properties of `file` when given.
pub(crate) fn cluster_config(bootstrap: &str, file: Option<&Path>) -> Result<ClusterConfig> {
    let mut config = ClusterConfig::new(bootstrap);
    if let Some(file) = file {
        config.properties = read(file)?;
    }
    Ok(config)
}

fn read(file: &Path) -> Result<Vec<(String, String)>> {
    let shown = file.display();
    let size = std::fs::metadata(file).with_context(|| format!("reading {shown}"))?.len();
    if size > MAX_FILE_BYTES {
        bail!("{shown} holds {size} bytes; a Kafka client settings file is at most 1 MiB");
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {shown}"))?;
    parse(&text).with_context(|| format!("in {shown}"))
}

fn parse(text: &str) -> Result<Vec<(String, String)>> {
    let mut properties = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected key=value, got {line:?}", i + 1);
        };
        let key = key.trim();
        if key.is_empty() {
            bail!("line {}: a setting without a key", i + 1);
        }
        if key == "bootstrap.servers" || key == "client.id" {
            bail!("line {}: {key} is set by eddy (--kafka, one client.id per client)", i + 1);
        }
        properties.push((key.to_owned(), value.trim().to_owned()));
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_read_with_comments_and_spaces() {
        let text = "# SASL over TLS\n\nsecurity.protocol = SASL_SSL\n! another comment\n\
                    sasl.mechanism=SCRAM-SHA-512\nsasl.password=a=b c\n";
        let read = parse(text).expect("parses");
        let read: Vec<(&str, &str)> = read.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            read,
            [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.password", "a=b c")
            ]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(
            err("a=1\nsecurity.protocol\n"),
            "line 2: expected key=value, got \"security.protocol\""
        );
        assert_eq!(err(" = x"), "line 1: a setting without a key");
        assert_eq!(
            err("bootstrap.servers=h:9092"),
            "line 1: bootstrap.servers is set by eddy (--kafka, one client.id per client)"
        );
    }
}
