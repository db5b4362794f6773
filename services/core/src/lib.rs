//! shadowdiff's shared vocabulary, used by every service and free of I/O.
//!
//! Start with [`RequestId`] (how an exchange is named end to end) and [`headers`] (the header
//! names services agree on), then [`event`] (what the tap and the mirror publish to Kafka),
//! [`codec`] (how those events are framed on the wire) and [`diff`] (how two responses are
//! compared). Nothing here links rdkafka or opens a socket, so tests and benchmarks of the
//! pure logic build quickly.

pub mod codec;
pub mod diff;
pub mod event;
pub mod headers;
pub mod redact;
pub mod request_id;

pub use codec::{DecodeError, EncodeError, EventCodec};
pub use event::{CapturedBody, ErrorKind, ExpectedLeg, Header, OutboundCallEvent, RequestEvent, ResponseEvent, Role};
pub use request_id::{InvalidRequestId, RequestId};
