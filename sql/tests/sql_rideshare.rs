//! The course's rideshare statements (`examples/rideshare.sql`, as the course prints them) run
//! end to end: a stream with GEO_DISTANCE, a table with a user-defined function, a pull query
//! by ROWKEY, a table declared over a 3-partition topic with `key=`, and its pull and push
//! queries by ROWKEY.
#![allow(clippy::unwrap_used)]

#[path = "../../processor/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use eddy_processor::{LogAccess, RuntimeConfig, partition_for_key};
use eddy_sql::{FunctionRegistry, Outcome, Session, SqlType, TableQuery};
use serde_json::{Value, json};

const SCRIPT: &str = include_str!("../../examples/rideshare.sql");

/// qualifyPromotion(km): within 5 km of the destination.
fn functions() -> FunctionRegistry {
    let mut fns = FunctionRegistry::new();
    fns.register("qualifyPromotion", Some(vec![SqlType::Double]), SqlType::Boolean, |args| {
        Ok(args[0].as_f64().map_or(Value::Null, |km| Value::Bool(km <= 5.0)))
    });
    fns
}

fn produce_json(logs: &dyn LogAccess, topic: &str, key: &str, value: Value, ts: i64) {
    let parts = logs.partition_count(topic).unwrap();
    let p = partition_for_key(key.as_bytes(), parts);
    let rec = (Some(key.as_bytes().to_vec()), Some(serde_json::to_vec(&value).unwrap()), ts);
    common::produce(logs, topic, p, &[rec], 1);
}

#[test]
fn rideshare_statements_run_as_printed_and_answer_the_pull_and_push_queries() {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::open_logs(&dir.path().join("logs"));
    let mut session = Session::new(functions());
    let outcomes = session.execute(SCRIPT, 1).unwrap();

    let mut running = Vec::new();
    let mut queries: Vec<TableQuery> = Vec::new();
    for o in outcomes {
        let config = RuntimeConfig::new(dir.path().join("state"));
        match o {
            Outcome::Declared(info) => {
                logs.create_topic(&info.topic, info.partitions, false).unwrap()
            }
            Outcome::Materialized { compiled, .. } => {
                let info = &compiled.target;
                logs.create_topic(&info.topic, info.partitions, false).unwrap();
                running.push(compiled.processor.start(logs.clone(), config).unwrap());
            }
            Outcome::Query { compiled, .. } => {
                running.push(compiled.processor.start(logs.clone(), config).unwrap());
            }
            Outcome::Select(q) => queries.push(q),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(running.len(), 3, "locations, activePromotions, currentCarLocations");
    assert_eq!(queries.len(), 3);
    let (promotion, car, follow) = (&queries[0], &queries[1], &queries[2]);
    assert!(!promotion.push && !car.push && follow.push);

    // The push query subscribes before the waypoints arrive.
    let cars = running[2].table::<Value, Value>(&follow.table).unwrap();
    let changes = cars.subscribe();

    // Ride 6fd0fcdb approaches its destination (Paris, Notre-Dame); ride aa11 stays far away.
    let dst = (48.8530, 2.3499);
    let geo = |lat: f64, lon: f64| json!({"latitude": lat, "longitude": lon, "dstLatitude": dst.0, "dstLongitude": dst.1});
    produce_json(&*logs, "geoEvents", "6fd0fcdb", geo(48.95, 2.35), 1);
    produce_json(&*logs, "geoEvents", "aa11", geo(49.50, 2.35), 2);
    produce_json(&*logs, "geoEvents", "6fd0fcdb", geo(48.87, 2.35), 3);
    // Vehicle 6fd0fcdb and another report waypoints to the topic both collections read.
    let waypoint = |i: i64, v: &str, lat: f64| {
        let value = json!({"vehicleId": v, "latitude": lat, "longitude": 10.25});
        produce_json(&*logs, "locations", v, value, 10 + i);
    };
    waypoint(0, "6fd0fcdb", 1.0);
    waypoint(1, "car-2", 2.0);
    let settle = || {
        for _ in 0..2 {
            for r in &running {
                r.wait_caught_up(Duration::from_secs(30)).unwrap();
            }
        }
    };
    settle();

    // The derived stream carries the distance: ~10.8 km, then ~1.9 km (the ride id is the
    // record key, not in the value, as in ksqlDB).
    let located = common::read_topic(&*logs, "LOCATIONS");
    let km: Vec<f64> = located
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"6fd0fcdb".as_slice()))
        .map(|r| serde_json::from_slice::<Value>(r.value.as_ref().unwrap()).unwrap())
        .inspect(|v| assert!(v.get("RIDEID").is_none(), "{v}"))
        .map(|v| v["KMTODST"].as_f64().unwrap())
        .collect();
    assert_eq!(km.len(), 2);
    assert!((km[0] - 10.79).abs() < 0.05 && (km[1] - 1.89).abs() < 0.05, "{km:?}");

    // The pull query on the materialized view.
    let promotions = running[1].table::<Value, Value>(&promotion.table).unwrap();
    let rows = promotion.run(&promotions, &session.functions).unwrap();
    assert_eq!(Value::from(rows), json!([{"RIDEID": "6fd0fcdb", "PROMOTION": true}]));
    let far = session.execute("SELECT * FROM activePromotions WHERE rideId = 'aa11';", 1).unwrap();
    let Outcome::Select(far) = &far[0] else { panic!() };
    let rows = far.run(&promotions, &session.functions).unwrap();
    assert_eq!(rows[0]["PROMOTION"], false);

    // The pull query on the declared table.
    let rows = car.run(&cars, &session.functions).unwrap();
    assert_eq!(
        Value::from(rows),
        json!([{"VEHICLEID": "6fd0fcdb", "LATITUDE": 1.0, "LONGITUDE": 10.25}])
    );

    // The push query sees vehicle 6fd0fcdb's changes only.
    let next_row = || loop {
        let change = changes.recv_timeout(Duration::from_secs(30)).unwrap();
        let value = change.value.as_ref().unwrap();
        if let Some(row) = follow.row(&change.key, value, change.ts, &session.functions) {
            return Value::Object(row);
        }
    };
    assert_eq!(next_row(), json!({"VEHICLEID": "6fd0fcdb", "LATITUDE": 1.0, "LONGITUDE": 10.25}));
    waypoint(2, "car-2", 2.5);
    waypoint(3, "6fd0fcdb", 1.5);
    assert_eq!(next_row(), json!({"VEHICLEID": "6fd0fcdb", "LATITUDE": 1.5, "LONGITUDE": 10.25}));
    settle();
    assert_eq!(cars.scan().len(), 2);
    for r in running {
        r.stop().unwrap();
    }
}
