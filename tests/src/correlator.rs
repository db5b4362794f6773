//! Feeding the correlator directly: whole exchanges published as the tap and mirror would.

use std::time::Duration;

use rdkafka::producer::FutureRecord;
use shadowdiff_core::{CapturedBody, EventCodec, Header, ResponseEvent, Role};
use shadowdiff_runtime::kafka::KafkaConfig;

use crate::mirror::request_event;

fn response(id: &str, role: Role, deployment: &str, price: u32) -> ResponseEvent {
    ResponseEvent {
        request_id: id.into(),
        timestamp_ms: shadowdiff_core::event::now_ms(),
        role,
        deployment: deployment.into(),
        status: Some(200),
        headers: vec![Header::new("content-type", "application/json")],
        body: CapturedBody::capture(format!(r#"{{"price":{price}}}"#).as_bytes(), 1024),
        latency_us: 1000,
        error: None,
        profile: Some("p".into()),
        stage: Some("shadow".into()),
        expected_legs: Vec::new(),
    }
}

/// Publishes `n` whole exchanges (request, primary, candidate) with ids `{prefix}-{i}`.
pub async fn exchanges(brokers: &str, requests: &str, responses: &str, prefix: &str, n: usize) {
    let producer = KafkaConfig { brokers: brokers.to_owned(), ..KafkaConfig::default() }
        .producer()
        .unwrap_or_else(|e| panic!("{e}"));
    let codec = EventCodec::new().unwrap_or_else(|e| panic!("{e}"));
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let request = codec.encode(&request_event(&id, "GET", "/items/{id}")).unwrap_or_else(|e| panic!("{e}"));
        producer
            .send(FutureRecord::to(requests).key(&id).payload(&request), Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("publish: {e}"));
        for event in [response(&id, Role::Primary, "primary", 100), response(&id, Role::Candidate, "v2", 101)] {
            let bytes = codec.encode(&event).unwrap_or_else(|e| panic!("{e}"));
            producer
                .send(FutureRecord::to(responses).key(&id).payload(&bytes), Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("publish: {e}"));
        }
    }
}
