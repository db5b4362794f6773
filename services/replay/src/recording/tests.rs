use std::path::PathBuf;

use apache_avro::{Codec, DeflateSettings, Writer};
use shadowdiff_core::Role;

use super::*;
use crate::recorded::tests::exchange;

/// A fresh directory under the system's temporary one, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("shadowdiff-recording-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn window() -> Window {
    Window::new(1_000, 9_000).unwrap().with_routes(["/items/{id}"]).with_sample_percent(50.0).unwrap()
}

/// Writes `values` with the recording schema but none of `write`'s checks, as another tool might.
fn write_raw(path: &Path, codec: Codec, values: &[Recorded]) {
    let mut writer = Writer::with_codec(schema().unwrap(), File::create(path).unwrap(), codec);
    for value in values {
        writer.append_ser(value).unwrap();
    }
    writer.into_inner().unwrap();
}

#[test]
fn round_trips_exchanges_and_the_window() {
    let dir = Dir::new("round-trip");
    let path = dir.file("window.avro");
    let mut exchanges: Vec<Recorded> = (0..500).map(|i| exchange(&format!("r-{i}"), 1_000 + i)).collect();
    exchanges[3].request.headers.push(shadowdiff_core::Header::new("x-sealed-authorization", vec![0, 159, 255]));
    exchanges[4].primary.error = Some(shadowdiff_core::ErrorKind::Timeout);
    exchanges[4].primary.status = None;
    exchanges[5].primary.expected_legs = vec![shadowdiff_core::ExpectedLeg::new(Role::Candidate, "v2")];
    assert_eq!(write(&path, &window(), &exchanges).unwrap(), 500);
    assert!(!partial_path(&path).exists());
    let recording = read(&path).unwrap();
    assert_eq!(recording.window(), Some(&window()));
    let back: Vec<Recorded> = recording.collect::<Result<_, _>>().unwrap();
    assert_eq!(back, exchanges);
}

#[test]
fn refuses_more_exchanges_than_asked_for() {
    let dir = Dir::new("too-many");
    let path = dir.file("w.avro");
    let exchanges: Vec<Recorded> = (0..3).map(|i| exchange(&format!("r-{i}"), i)).collect();
    write(&path, &window(), &exchanges).unwrap();
    let results: Vec<_> = read_at_most(&path, 2).unwrap().collect();
    assert_eq!(results.len(), 3, "two exchanges, then the error, then nothing");
    assert!(results[..2].iter().all(Result::is_ok));
    assert!(matches!(results[2], Err(RecordingError::TooMany { max: 2, .. })));
}

#[test]
fn refuses_an_exchange_that_breaks_the_events_rules() {
    let dir = Dir::new("invalid");
    let path = dir.file("w.avro");
    let mut candidate = exchange("r-2", 2);
    candidate.primary.role = Role::Candidate;
    let error = write(&path, &window(), [exchange("r-1", 1), candidate.clone()]).unwrap_err();
    assert!(matches!(error, RecordingError::Invalid { index: 1, source: InvalidRecord::NotPrimary { .. }, .. }));
    assert!(!path.exists() && !partial_path(&path).exists(), "nothing is left behind");

    write_raw(&path, Codec::Null, &[exchange("r-1", 1), candidate]);
    let mut recording = read(&path).unwrap();
    assert!(recording.window().is_none(), "another tool's file has no window");
    assert!(recording.next().unwrap().is_ok());
    assert!(matches!(recording.next(), Some(Err(RecordingError::Invalid { index: 1, .. }))));
    assert!(recording.next().is_none());
}

#[test]
fn refuses_compressed_blocks_and_other_files() {
    let dir = Dir::new("compressed");
    let path = dir.file("w.avro");
    write_raw(&path, Codec::Deflate(DeflateSettings::default()), &[exchange("r-1", 1)]);
    assert!(matches!(read(&path), Err(RecordingError::Compressed { codec, .. }) if codec == "deflate"));

    std::fs::write(&path, b"not avro at all").unwrap();
    assert!(matches!(read(&path), Err(RecordingError::Avro { .. })));
    assert!(matches!(read(&dir.file("missing.avro")), Err(RecordingError::Io { .. })));
}

#[test]
fn a_block_beyond_the_allocation_cap_is_refused() {
    let dir = Dir::new("huge-block");
    let path = dir.file("w.avro");
    write(&path, &window(), [exchange("r-1", 1)]).unwrap();
    // The block after the header claims 1 record of 2^40 bytes.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(header_len(&bytes));
    bytes.extend([0x02]); // one record
    bytes.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x40]); // zig-zag varint of 2^40
    std::fs::write(&path, bytes).unwrap();
    let mut recording = read(&path).unwrap();
    let error = recording.next().unwrap().unwrap_err();
    let cap = apache_avro::util::max_allocation_bytes(usize::MAX);
    assert!(error.to_string().contains(&cap.to_string()), "{error}");
}

/// Where the first block starts: after the magic, the metadata map and the 16-byte marker.
fn header_len(bytes: &[u8]) -> usize {
    let mut rest = &bytes[4..];
    let before = rest.len();
    apache_avro::from_avro_datum(&Schema::map(Schema::Bytes), &mut rest, None).unwrap();
    4 + (before - rest.len()) + 16
}
