//! Body capture: a bounded prefix plus the length and hash of the whole body.

use std::borrow::Cow;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A body as captured. `bytes` holds at most the capture cap; `length` and `sha256` always
/// describe the full body, so a truncated capture still compares by hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedBody {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    pub length: i64,
    pub truncated: bool,
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
}

impl CapturedBody {
    /// Captures a complete, in-memory body, keeping at most `cap` bytes of it.
    pub fn capture(full: &[u8], cap: usize) -> Self {
        let mut capture = BodyCapture::new(cap);
        capture.update(full);
        capture.finish()
    }

    pub fn empty() -> Self {
        Self::capture(&[], 0)
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(&self.sha256)
    }
}

impl std::fmt::Debug for CapturedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapturedBody")
            .field("captured", &self.bytes.len())
            .field("length", &self.length)
            .field("truncated", &self.truncated)
            .field("sha256", &self.sha256_hex())
            .finish()
    }
}

/// Incremental capture for streamed bodies: feed chunks as they pass, then finish.
#[derive(Debug, Clone)]
pub struct BodyCapture {
    cap: usize,
    bytes: Vec<u8>,
    length: u64,
    hasher: Sha256,
}

impl BodyCapture {
    pub fn new(cap: usize) -> Self {
        Self { cap, bytes: Vec::new(), length: 0, hasher: Sha256::new() }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        let room = self.cap.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&chunk[..room.min(chunk.len())]);
        self.length += chunk.len() as u64;
        self.hasher.update(chunk);
    }

    pub fn finish(self) -> CapturedBody {
        CapturedBody {
            truncated: (self.bytes.len() as u64) < self.length,
            length: i64::try_from(self.length).unwrap_or(i64::MAX),
            bytes: self.bytes,
            sha256: self.hasher.finalize().to_vec(),
        }
    }
}

/// Largest body decoded; beyond it (a decompression bomb, say) a body is treated as unreadable.
const MAX_DECODED_BYTES: u64 = 32 * 1024 * 1024;

/// `bytes` with the Content-Encoding `encoding` undone; `None` when encoded in an unknown
/// way, corrupt, or larger than 32 MiB decoded.
pub fn decode<'a>(bytes: &'a [u8], encoding: Option<&[u8]>) -> Option<Cow<'a, [u8]>> {
    let encoding = encoding.map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase()).unwrap_or_default();
    let reader: Box<dyn Read + 'a> = match encoding.as_str() {
        "" | "identity" => return Some(Cow::Borrowed(bytes)),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(bytes)),
        // HTTP's "deflate" is zlib-wrapped; some servers send it raw.
        "deflate" if bytes.first().is_some_and(|b| b & 0x0f == 8) => Box::new(flate2::read::ZlibDecoder::new(bytes)),
        "deflate" => Box::new(flate2::read::DeflateDecoder::new(bytes)),
        "br" => Box::new(brotli::Decompressor::new(bytes, 4096)),
        _ => return None,
    };
    let mut out = Vec::new();
    reader.take(MAX_DECODED_BYTES + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= MAX_DECODED_BYTES).then_some(Cow::Owned(out))
}

/// `bytes` encoded with the Content-Encoding `encoding` (one [`decode`] reads); `None` for
/// an encoding it does not know.
pub fn encode(bytes: &[u8], encoding: Option<&[u8]>) -> Option<Vec<u8>> {
    let encoding = encoding.map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase()).unwrap_or_default();
    let mut out = Vec::new();
    match encoding.as_str() {
        "" | "identity" => out.extend_from_slice(bytes),
        "gzip" | "x-gzip" => {
            let mut encoder = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            encoder.write_all(bytes).ok()?;
            encoder.finish().ok()?;
        }
        "deflate" => {
            let mut encoder = flate2::write::ZlibEncoder::new(&mut out, flate2::Compression::fast());
            encoder.write_all(bytes).ok()?;
            encoder.finish().ok()?;
        }
        "br" => {
            // Quality 1 and a 256 KiB window (the capture cap): re-encoding a redacted body
            // must stay cheap, and its size hardly matters.
            let mut encoder = brotli::CompressorWriter::new(&mut out, 4096, 1, 18);
            encoder.write_all(bytes).ok()?;
            encoder.flush().ok()?;
            drop(encoder);
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_but_hashes_the_whole_body() {
        let full = b"0123456789";
        let body = CapturedBody::capture(full, 4);
        assert_eq!(body.bytes, b"0123");
        assert_eq!(body.length, 10);
        assert!(body.truncated);
        assert_eq!(body.sha256, Sha256::digest(full).to_vec());

        let mut streamed = BodyCapture::new(4);
        streamed.update(b"012");
        streamed.update(b"3456789");
        assert_eq!(streamed.finish(), body);
    }

    #[test]
    fn every_known_encoding_round_trips() {
        let text = br#"{"a":[1,2,3],"b":"text"}"#;
        for encoding in ["gzip", "deflate", "br", "identity"] {
            let encoded = encode(text, Some(encoding.as_bytes())).unwrap();
            assert_eq!(decode(&encoded, Some(encoding.as_bytes())).unwrap().as_ref(), text, "{encoding}");
        }
        assert_eq!(encode(text, Some(b"zstd")), None);
        assert_eq!(decode(text, Some(b"gzip")), None, "corrupt");
    }

    #[test]
    fn small_bodies_are_whole() {
        let body = CapturedBody::capture(b"{}", 256);
        assert_eq!((body.bytes.as_slice(), body.length, body.truncated), (&b"{}"[..], 2, false));
    }
}
