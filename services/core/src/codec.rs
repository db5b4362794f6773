//! Avro single-object encoding of the events, with the schemas embedded from `schemas/avro`.
//!
//! Framing: the Avro specification's *single-object encoding* — two marker bytes `C3 01`, the
//! 8-byte CRC-64-AVRO (Rabin) fingerprint of the writer's schema, then the binary datum. We
//! chose it over the Confluent wire format because it needs no schema registry: every
//! message names its writer schema by fingerprint, and every reader carries the schemas it
//! knows (the current one and each previous one under `schemas/avro/previous`) compiled in.
//! A new field therefore ships as: add it with a default, move the old schema to
//! `previous/`, and readers on either version keep decoding both.
//!
//! The fingerprint is apache-avro's, and it is not the Java implementation's for these
//! schemas: for a field with a logical type, apache-avro's parsing canonical form keeps
//! `{"type":"long"}` where Java's writes `"long"`. A reader in another language must be
//! given these headers (or this codec's schemas with their fingerprints) rather than
//! compute its own from the `.avsc` files.

use std::sync::OnceLock;

use apache_avro::{Schema, headers::HeaderBuilder, headers::RabinFingerprintHeader};
use serde::{Serialize, de::DeserializeOwned};

use crate::event::{OutboundCallEvent, RequestEvent, ResponseEvent};

const HEADER_LEN: usize = 10;
const MAGIC: [u8; 2] = [0xC3, 0x01];
/// Upper bound on any single allocation while decoding. Captures are capped far below this,
/// so a larger length prefix can only come from a corrupt message.
const MAX_ALLOCATION_BYTES: usize = 64 * 1024 * 1024;

/// Which event family a schema belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Request,
    Response,
    OutboundCall,
}

/// An event type with a schema in `schemas/avro`.
pub trait Event: Serialize + DeserializeOwned {
    const KIND: EventKind;
}

impl Event for RequestEvent {
    const KIND: EventKind = EventKind::Request;
}

impl Event for ResponseEvent {
    const KIND: EventKind = EventKind::Response;
}

impl Event for OutboundCallEvent {
    const KIND: EventKind = EventKind::OutboundCall;
}

/// The schemas of one event family: the current one (used to write and to read into) and
/// every schema a writer may have used.
#[derive(Debug)]
struct Family {
    current: Schema,
    header: [u8; HEADER_LEN],
    writers: Vec<([u8; HEADER_LEN], Schema)>,
}

impl Family {
    fn parse(current: &str, previous: &[&str]) -> Result<Self, SchemaError> {
        let current = Schema::parse_str(current).map_err(SchemaError)?;
        let mut writers = vec![(header_of(&current), current.clone())];
        for text in previous {
            let schema = Schema::parse_str(text).map_err(SchemaError)?;
            writers.push((header_of(&schema), schema));
        }
        Ok(Self { header: header_of(&current), current, writers })
    }
}

fn header_of(schema: &Schema) -> [u8; HEADER_LEN] {
    let built = RabinFingerprintHeader::from_schema(schema).build_header();
    let mut header = [0; HEADER_LEN];
    header.copy_from_slice(&built[..HEADER_LEN]);
    header
}

/// An embedded schema failed to parse: a build defect, caught by the codec's tests.
#[derive(Debug, thiserror::Error)]
#[error("embedded Avro schema is invalid: {0}")]
pub struct SchemaError(#[source] apache_avro::Error);

/// An event could not be encoded against its own schema: a programming error.
#[derive(Debug, thiserror::Error)]
#[error("encode {kind:?} event: {source}")]
pub struct EncodeError {
    kind: EventKind,
    #[source]
    source: apache_avro::Error,
}

/// Why bytes from Kafka are not a readable event. Every variant is a dead-letter reason.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {0} bytes, shorter than the 10-byte single-object header")]
    TooShort(usize),
    #[error("message does not start with the Avro single-object marker C3 01 (found {0:02X?})")]
    BadMarker([u8; 2]),
    #[error("writer schema fingerprint {0} is not a known {1:?} event schema")]
    UnknownSchema(String, EventKind),
    #[error("Avro datum is malformed: {0}")]
    Malformed(#[source] apache_avro::Error),
    #[error("{0} unread bytes after the Avro datum")]
    TrailingBytes(usize),
    #[error("Avro datum does not fit the event type: {0}")]
    Mismatch(#[source] apache_avro::Error),
    #[error("event field {field} breaks the contract: {reason}")]
    Invalid { field: &'static str, reason: &'static str },
}

impl DecodeError {
    /// A short, bounded label for metrics and the dead-letter `reason` header.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::TooShort(_) => "too_short",
            Self::BadMarker(_) => "bad_marker",
            Self::UnknownSchema(..) => "unknown_schema",
            Self::Malformed(_) => "malformed",
            Self::TrailingBytes(_) => "trailing_bytes",
            Self::Mismatch(_) => "mismatch",
            Self::Invalid { .. } => "invalid_field",
        }
    }
}

/// Encodes and decodes events. Cheap to create: the schemas are parsed once per process.
#[derive(Debug, Clone, Copy)]
pub struct EventCodec {
    families: &'static Families,
}

#[derive(Debug)]
struct Families {
    request: Family,
    response: Family,
    outbound_call: Family,
}

static FAMILIES: OnceLock<Families> = OnceLock::new();

impl EventCodec {
    pub fn new() -> Result<Self, SchemaError> {
        if let Some(families) = FAMILIES.get() {
            return Ok(Self { families });
        }
        // Set once per process; a second call is a no-op, so every codec agrees.
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let parsed = Families::parse()?;
        Ok(Self { families: FAMILIES.get_or_init(|| parsed) })
    }
}

impl Families {
    fn parse() -> Result<Self, SchemaError> {
        Ok(Self {
            request: Family::parse(
                include_str!("../../../schemas/avro/request_event.avsc"),
                &[
                    include_str!("../../../schemas/avro/previous/request_event.v1.avsc"),
                    include_str!("../../../schemas/avro/previous/request_event.v2.avsc"),
                ],
            )?,
            response: Family::parse(
                include_str!("../../../schemas/avro/response_event.avsc"),
                &[
                    include_str!("../../../schemas/avro/previous/response_event.v1.avsc"),
                    include_str!("../../../schemas/avro/previous/response_event.v2.avsc"),
                    include_str!("../../../schemas/avro/previous/response_event.v3.avsc"),
                    include_str!("../../../schemas/avro/previous/response_event.v4.avsc"),
                ],
            )?,
            outbound_call: Family::parse(
                include_str!("../../../schemas/avro/outbound_call_event.avsc"),
                &[
                    include_str!("../../../schemas/avro/previous/outbound_call_event.v1.avsc"),
                    include_str!("../../../schemas/avro/previous/outbound_call_event.v2.avsc"),
                    include_str!("../../../schemas/avro/previous/outbound_call_event.v3.avsc"),
                ],
            )?,
        })
    }
}

impl EventCodec {
    fn family(&self, kind: EventKind) -> &'static Family {
        match kind {
            EventKind::Request => &self.families.request,
            EventKind::Response => &self.families.response,
            EventKind::OutboundCall => &self.families.outbound_call,
        }
    }

    /// Encodes with the current schema, single-object framed.
    ///
    /// Serializes straight into the output, without an intermediate Avro value (over ten
    /// times faster, see `benches/codec.rs`). That path cannot follow references to named
    /// types defined elsewhere in the schema (the outbound-call event reuses `Header` and
    /// `CapturedBody`), so such events go through an Avro value instead.
    pub fn encode<E: Event>(&self, event: &E) -> Result<Vec<u8>, EncodeError> {
        let family = self.family(E::KIND);
        let err = |source| EncodeError { kind: E::KIND, source };
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&family.header);
        if apache_avro::write_avro_datum_ref(&family.current, event, &mut out).is_ok() {
            return Ok(out);
        }
        out.truncate(HEADER_LEN);
        let value = apache_avro::to_value(event).and_then(|v| v.resolve(&family.current)).map_err(err)?;
        out.extend(apache_avro::to_avro_datum(&family.current, value).map_err(err)?);
        Ok(out)
    }

    /// Decodes a message written with the current schema or any previous one.
    pub fn decode<E: Event>(&self, bytes: &[u8]) -> Result<E, DecodeError> {
        let family = self.family(E::KIND);
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TooShort(bytes.len()));
        }
        let (header, mut datum) = bytes.split_at(HEADER_LEN);
        if header[..2] != MAGIC {
            return Err(DecodeError::BadMarker([header[0], header[1]]));
        }
        let writer = family
            .writers
            .iter()
            .find(|(known, _)| known == header)
            .map(|(_, schema)| schema)
            .ok_or_else(|| DecodeError::UnknownSchema(hex::encode(&header[2..]), E::KIND))?;
        // Written with the current schema: nothing to resolve (a tenth of the decode's cost).
        let reader = (header != family.header).then_some(&family.current);
        let value = apache_avro::from_avro_datum(writer, &mut datum, reader).map_err(DecodeError::Malformed)?;
        if !datum.is_empty() {
            return Err(DecodeError::TrailingBytes(datum.len()));
        }
        apache_avro::from_value(&value).map_err(DecodeError::Mismatch)
    }
}

#[cfg(test)]
mod tests;
