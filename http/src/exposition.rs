//! `/metrics`: every metric eddy exposes, gathered when scraped and encoded with
//! prometheus-client — the Prometheus text format (0.0.4), or OpenMetrics when the scraper
//! asks for it (`Accept: application/openmetrics-text`, as Prometheus does).
//!
//! Pull model: a scrape reads the broker's counters ([`eddy_broker::metrics::Meters`], the
//! topics' meters, the logs' storage stats) and computes every gauge from the broker's state
//! through the same calls its admin API answers with (`ListGroups`/`DescribeGroup` through
//! `Broker::handle`, the processors' status). Nothing is kept between scrapes, so a deleted
//! topic or group simply stops appearing. docs/operations.md lists every metric.
//!
//! Label sets are bounded: request kinds, API keys and error codes are fixed enumerations;
//! topics, partitions, groups and processors are the broker's own (no per-key labels).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eddy_broker::Broker;
use eddy_protocol::v1::{self, request, response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::app::App;

mod families;

pub use families::{Family, Labels, Sample};

/// The scrape: gathers, then encodes in the format the scraper accepts.
pub async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    let families = gather(&app).await;
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Encoded(families)));
    let mut text = String::new();
    let (encoded, kind) = if openmetrics {
        let done = prometheus_client::encoding::text::encode(&mut text, &registry);
        (done, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    } else {
        let done = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        (done, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
    };
    if encoded.is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n").into_response();
    }
    let mut response = text.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

/// Every family, from the broker's state now.
pub async fn gather(app: &App) -> Vec<Family> {
    let mut out = families::http(app);
    let Some(broker) = app.broker() else { return merge(out) };
    out.extend(families::requests(broker.meters()));
    out.extend(families::connections(broker.meters()));
    out.extend(families::topics(broker));
    out.extend(families::maintenance(broker.meters()));
    out.extend(families::groups(&describe_groups(broker).await));
    out.extend(families::processors(&broker.observe_processors()));
    merge(out)
}

/// One family per name (the HTTP listener's connections join the others'), none empty.
fn merge(families: Vec<Family>) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::with_capacity(families.len());
    for f in families {
        match out.iter_mut().find(|o| o.name == f.name) {
            Some(o) => o.samples.extend(f.samples),
            None => out.push(f),
        }
    }
    out.retain(|f| !f.samples.is_empty());
    out
}

/// Every group's description, as `eddy group describe` gets it.
pub async fn describe_groups(broker: &Broker) -> Vec<v1::DescribeGroupResponse> {
    let Ok(Some(response::Body::ListGroups(list))) =
        broker.handle(request::Body::ListGroups(v1::ListGroupsRequest {})).await
    else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.groups.len());
    for g in list.groups {
        let ask = request::Body::DescribeGroup(v1::DescribeGroupRequest { group_id: g.group_id });
        if let Ok(Some(response::Body::DescribeGroup(d))) = broker.handle(ask).await {
            out.push(d);
        }
    }
    out
}

/// The gathered families, encoded on demand by prometheus-client.
#[derive(Debug)]
struct Encoded(Vec<Family>);

impl Collector for Encoded {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let kind = match family.samples.first().map(|(_, s)| s) {
                Some(Sample::Counter(_)) => MetricType::Counter,
                Some(Sample::Gauge(_)) => MetricType::Gauge,
                Some(Sample::Histogram { .. }) => MetricType::Histogram,
                None => continue,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            for (labels, sample) in &family.samples {
                let series = metric.encode_family(labels)?;
                match sample {
                    Sample::Counter(v) => ConstCounter::new(*v).encode(series)?,
                    Sample::Gauge(v) => ConstGauge::new(*v).encode(series)?,
                    Sample::Histogram { sum, count, buckets } => {
                        let mut series = series;
                        series.encode_histogram::<NoLabelSet>(
                            *sum,
                            *count,
                            buckets,
                            None::<&HashMap<_, _>>,
                        )?
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(families: Vec<Family>, openmetrics: bool) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Encoded(merge(families))));
        let mut text = String::new();
        let done = if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        };
        done.map(|()| text).unwrap_or_default()
    }

    #[test]
    fn counters_gauges_and_histograms_encode_in_both_formats_and_families_merge() {
        let labels = |v: &str| vec![("topic", v.to_string())];
        let families = vec![
            Family { name: "eddy_x", help: "X.", samples: vec![(labels("a"), Sample::Counter(3))] },
            Family { name: "eddy_x", help: "X.", samples: vec![(labels("b"), Sample::Counter(4))] },
            Family { name: "eddy_empty", help: "None.", samples: Vec::new() },
            Family {
                name: "eddy_h_seconds",
                help: "H.",
                samples: vec![(
                    Vec::new(),
                    Sample::Histogram {
                        sum: 0.5,
                        count: 3,
                        buckets: vec![(0.1, 1), (1.0, 1), (f64::INFINITY, 1)],
                    },
                )],
            },
        ];
        let text = encode(families.clone(), false);
        assert!(text.contains("# TYPE eddy_x_total counter\n"), "{text}");
        assert!(
            text.contains("eddy_x_total{topic=\"a\"} 3\neddy_x_total{topic=\"b\"} 4\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE eddy_x_total").count(), 1, "{text}");
        assert!(!text.contains("eddy_empty"), "{text}");
        assert!(text.contains("eddy_h_seconds_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("eddy_h_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        let open = encode(families, true);
        assert!(open.contains("# TYPE eddy_x counter\n") && open.ends_with("# EOF\n"), "{open}");
    }
}
