//! The recording file: a window of recorded exchanges as an Avro object container file, for
//! replaying where the production brokers cannot be reached (a CI job, a laptop).
//!
//! Each record is a `dev.shadowdiff.recording.RecordedExchange` holding two fields, the
//! `request` (the `RequestEvent` schema of `schemas/avro/request_event.avsc`, as it is) and
//! the `primary` (the `ResponseEvent` schema of `schemas/avro/response_event.avsc`, naming
//! the `Header` and `CapturedBody` types the request already defined, as Avro requires).
//! The file carries that schema in its header, so any Avro reader opens it (`fastavro`,
//! `avro-tools tojson`); the window it was recorded for is JSON under the header's
//! `shadowdiff.recording` key. Records are in request-timestamp order.
//!
//! The file holds no clear secrets. The events are recorded as the tap published them,
//! after its redaction: redacted headers, query parameters and JSON fields never left the
//! tap, and sealed headers stay sealed (encrypted with the tap's seal key), to be opened
//! only by a replay that holds that key.
//!
//! Blocks are written uncompressed, and only such files are read: the Avro library inflates
//! a compressed block with no bound on its size. Compress the whole file to ship it. Reading
//! is bounded too: no allocation beyond the event codec's cap, no exchange beyond
//! [`MAX_EXCHANGE_BYTES`](crate::MAX_EXCHANGE_BYTES), and no more exchanges than asked for.

use std::borrow::Borrow;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use apache_avro::types::Value;
use apache_avro::{Reader, Schema, Writer};
use serde::{Deserialize, Serialize};
use shadowdiff_core::EventCodec;

use crate::recorded::{InvalidRecord, Recorded};
use crate::window::{DEFAULT_LIMIT, Window};

mod schema;

/// The header key holding the recording's [`Header`] as JSON.
pub const METADATA_KEY: &str = "shadowdiff.recording";
/// Bumped when the file's layout changes in a way old readers cannot follow.
const FORMAT: u32 = 1;

/// What a recording says about itself, beside its schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The layout version, 1.
    pub format: u32,
    /// The window the exchanges were selected by.
    pub window: Window,
}

/// Why a recording cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Avro {
        path: PathBuf,
        #[source]
        source: apache_avro::Error,
    },
    #[error(
        "{path}: its blocks are compressed with {codec:?}; only uncompressed recordings are read, \
         since a compressed block's size is unknown until it is inflated"
    )]
    Compressed { path: PathBuf, codec: String },
    #[error("{path}: the `{METADATA_KEY}` header is unreadable: {source}")]
    Header {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: exchange {index} does not fit the recording's schema: {source}")]
    Mismatch {
        path: PathBuf,
        index: u64,
        #[source]
        source: apache_avro::Error,
    },
    #[error("{path}: exchange {index}: {source}")]
    Invalid {
        path: PathBuf,
        index: u64,
        #[source]
        source: InvalidRecord,
    },
    #[error("{path}: holds more than {max} exchanges")]
    TooMany { path: PathBuf, max: usize },
    #[error("the recording schema built from schemas/avro is invalid: {0}")]
    Schema(String),
}

/// The schema of a recording's records, built once from the events' embedded schemas.
pub fn schema() -> Result<&'static Schema, RecordingError> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA.get_or_init(schema::build).as_ref().map_err(|e| RecordingError::Schema(e.clone()))
}

/// Writes `exchanges`, recorded for `window`, to a new file at `path`, replacing any file
/// there only once the whole recording is written. Each exchange is checked
/// ([`Recorded::check`]) first. Returns how many were written.
pub fn write<I>(path: &Path, window: &Window, exchanges: I) -> Result<u64, RecordingError>
where
    I: IntoIterator,
    I::Item: Borrow<Recorded>,
{
    codec_bounds()?;
    let schema = schema()?;
    let partial = partial_path(path);
    let written = write_to(&partial, schema, window, exchanges).and_then(|n| {
        std::fs::rename(&partial, path).map_err(|source| RecordingError::Io { path: path.to_owned(), source })?;
        Ok(n)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial); // it may not exist; the first error is the one to report
    }
    written
}

fn write_to<I>(path: &Path, schema: &Schema, window: &Window, exchanges: I) -> Result<u64, RecordingError>
where
    I: IntoIterator,
    I::Item: Borrow<Recorded>,
{
    let io = |source| RecordingError::Io { path: path.to_owned(), source };
    let avro = |source| RecordingError::Avro { path: path.to_owned(), source };
    let file = File::create(path).map_err(io)?;
    let mut writer = Writer::new(schema, BufWriter::new(file));
    let header = Header { format: FORMAT, window: window.clone() };
    // A header of plain numbers and strings always serializes.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    writer.add_user_metadata(METADATA_KEY.to_owned(), header).map_err(avro)?;
    let mut count = 0;
    for exchange in exchanges {
        let exchange = exchange.borrow();
        exchange.check().map_err(|source| RecordingError::Invalid { path: path.to_owned(), index: count, source })?;
        writer.append_ser(exchange).map_err(avro)?;
        count += 1;
    }
    let mut buffered = writer.into_inner().map_err(avro)?;
    buffered.flush().map_err(io)?;
    let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(count)
}

/// `.NAME.partial` beside `path`: written first, then renamed over `path`.
fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(|| "recording".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.partial"))
}

/// Opens a recording holding at most [`DEFAULT_LIMIT`] exchanges.
pub fn read(path: &Path) -> Result<Recording, RecordingError> {
    read_at_most(path, DEFAULT_LIMIT)
}

/// Opens a recording, to read at most `max` exchanges from it: one more is an error.
pub fn read_at_most(path: &Path, max: usize) -> Result<Recording, RecordingError> {
    codec_bounds()?;
    let schema = schema()?;
    let io = |source| RecordingError::Io { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(io)?;
    let codec = block_codec(&mut file).map_err(|source| RecordingError::Avro { path: path.to_owned(), source })?;
    if let Some(codec) = codec.filter(|c| c != "null") {
        return Err(RecordingError::Compressed { path: path.to_owned(), codec });
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let reader = Reader::with_schema(schema, BufReader::new(file))
        .map_err(|source| RecordingError::Avro { path: path.to_owned(), source })?;
    let header = match reader.user_metadata().get(METADATA_KEY) {
        Some(json) => Some(
            serde_json::from_slice::<Header>(json)
                .map_err(|source| RecordingError::Header { path: path.to_owned(), source })?,
        ),
        None => None,
    };
    Ok(Recording { path: path.to_owned(), header, reader, read: 0, max, done: false })
}

/// The Avro library bounds every allocation by the cap (64 MiB) the event codec sets for
/// the process; making a codec sets it before anything here decodes.
fn codec_bounds() -> Result<(), RecordingError> {
    EventCodec::new().map(drop).map_err(|e| RecordingError::Schema(e.to_string()))
}

/// The `avro.codec` named in the container's header, read before the Avro reader is
/// trusted with the file.
fn block_codec(file: &mut File) -> Result<Option<String>, apache_avro::Error> {
    let mut magic = [0; 4];
    if file.read_exact(&mut magic).is_err() || magic != *b"Obj\x01" {
        // Let the Avro reader report what is wrong with the file.
        return Ok(None);
    }
    let mut header = BufReader::new(file);
    let Value::Map(metadata) = apache_avro::from_avro_datum(&Schema::map(Schema::Bytes), &mut header, None)? else {
        return Ok(None);
    };
    Ok(match metadata.get("avro.codec") {
        Some(Value::Bytes(codec)) => Some(String::from_utf8_lossy(codec).into_owned()),
        _ => None,
    })
}

/// An open recording: its [`Header`], and its exchanges as an iterator of
/// `Result<Recorded, RecordingError>` in the file's order. The first error ends it.
pub struct Recording {
    path: PathBuf,
    header: Option<Header>,
    reader: Reader<'static, BufReader<File>>,
    read: u64,
    max: usize,
    done: bool,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("read", &self.read)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Recording {
    /// What the file says about itself; `None` for a file written by another tool.
    pub const fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The window the exchanges were recorded for, when the file says.
    pub fn window(&self) -> Option<&Window> {
        self.header.as_ref().map(|h| &h.window)
    }

    fn fail(&mut self, error: RecordingError) -> Option<Result<Recorded, RecordingError>> {
        self.done = true;
        Some(Err(error))
    }
}

impl Iterator for Recording {
    type Item = Result<Recorded, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let value = match self.reader.next() {
            None => {
                self.done = true;
                return None;
            }
            Some(Err(source)) => return self.fail(RecordingError::Avro { path: self.path.clone(), source }),
            Some(Ok(value)) => value,
        };
        let index = self.read;
        self.read += 1;
        if usize::try_from(self.read).map_or(true, |read| read > self.max) {
            return self.fail(RecordingError::TooMany { path: self.path.clone(), max: self.max });
        }
        let recorded = match apache_avro::from_value::<Recorded>(&value) {
            Ok(recorded) => recorded,
            Err(source) => return self.fail(RecordingError::Mismatch { path: self.path.clone(), index, source }),
        };
        match recorded.check() {
            Ok(()) => Some(Ok(recorded)),
            Err(source) => self.fail(RecordingError::Invalid { path: self.path.clone(), index, source }),
        }
    }
}

#[cfg(test)]
mod tests;
