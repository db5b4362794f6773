//! Demo traffic through the tap: item reads (mirrored) and a few writes (never mirrored).

use std::time::Duration;

/// What was sent, so a caller can predict what the pipeline must record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// Request ids of the reads, in order; read `i` fetched `/items/{i}`.
    pub reads: Vec<String>,
    /// Request ids of the writes.
    pub writes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("request {id} through the tap: {source}")]
    Request { id: String, source: reqwest::Error },
    #[error("request {id}: tap answered {status}")]
    Status { id: String, status: u16 },
}

/// Sends `reads` GETs of `/items/0..reads` and `writes` POSTs through the tap at `tap`,
/// with request ids `{prefix}-r{i}` and `{prefix}-w{i}`.
pub async fn drive(tap: &str, prefix: &str, reads: u64, writes: u64) -> Result<Sent, TrafficError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| TrafficError::Request { id: String::new(), source })?;
    let mut sent = Sent::default();
    for i in 0..reads {
        let id = format!("{prefix}-r{i}");
        let response = client.get(format!("{tap}/items/{i}")).header("x-request-id", &id).send().await;
        check(&id, response, 200)?;
        sent.reads.push(id);
    }
    for i in 0..writes {
        let id = format!("{prefix}-w{i}");
        let response = client
            .post(format!("{tap}/items"))
            .header("x-request-id", &id)
            .header("content-type", "application/json")
            .body(format!(r#"{{"name":"new-{i}"}}"#))
            .send()
            .await;
        check(&id, response, 201)?;
        sent.writes.push(id);
    }
    Ok(sent)
}

fn check(id: &str, response: reqwest::Result<reqwest::Response>, expected: u16) -> Result<(), TrafficError> {
    let response = response.map_err(|source| TrafficError::Request { id: id.to_owned(), source })?;
    let status = response.status().as_u16();
    if status == expected { Ok(()) } else { Err(TrafficError::Status { id: id.to_owned(), status }) }
}
