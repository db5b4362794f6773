//! Which insert failures are worth retrying, decided by the error's type and, for errors
//! from the server, by ClickHouse's exception code.
//!
//! A failure is *transient* when the same rows may go in later: the network, a timeout, an
//! overloaded or restarting server (a 5xx without a code, `TOO_MANY_PARTS`, memory limits).
//! It is a *rejection* when these rows never will: ClickHouse could not parse or convert a
//! value, a check refused a row, or the client could not serialize one. Only rejections
//! split a batch (`sink::write`). Problems with the deployment rather than the rows (a
//! missing table or column, a schema that does not match, bad credentials) stay transient
//! on purpose: every row would be rejected alike, so the correlator waits visibly (health
//! check down, retries counted) for an operator instead of moving the whole stream to the
//! dead-letter topic.
//!
//! The `clickhouse` crate hands the server's answer over as text (`Error::BadResponse`),
//! which always starts with `Code: N` (or is the bare code, from `X-ClickHouse-Exception-Code`,
//! when the body is empty); the number is read from there and classified, never the message.

use shadowdiff_store::StoreError;

/// ClickHouse exception codes that reject the rows themselves.
/// Names from ClickHouse's `src/Common/ErrorCodes.cpp`; stable across versions.
const REJECTING_CODES: &[(u32, &str)] = &[
    (6, "CANNOT_PARSE_TEXT"),
    (25, "CANNOT_PARSE_ESCAPE_SEQUENCE"),
    (26, "CANNOT_PARSE_QUOTED_STRING"),
    (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED"),
    (32, "ATTEMPT_TO_READ_AFTER_EOF"),
    (33, "CANNOT_READ_ALL_DATA"),
    (38, "CANNOT_PARSE_DATE"),
    (41, "CANNOT_PARSE_DATETIME"),
    (53, "TYPE_MISMATCH"),
    (69, "ARGUMENT_OUT_OF_BOUND"),
    (70, "CANNOT_CONVERT_TYPE"),
    (72, "CANNOT_PARSE_NUMBER"),
    (117, "INCORRECT_DATA"),
    (128, "TOO_LARGE_ARRAY_SIZE"),
    (131, "TOO_LARGE_STRING_SIZE"),
    (321, "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"),
    (349, "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN"),
    (395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"),
    (407, "DECIMAL_OVERFLOW"),
    (469, "VIOLATED_CONSTRAINT"),
];

/// What to do about a failed insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Try the same rows again, after a backoff.
    Transient,
    /// These rows will never go in: split them, and dead-letter the ones that fail alone.
    Rejected(Rejection),
}

/// Why rows were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// ClickHouse's exception code; `None` when the client refused the row itself.
    pub(crate) code: Option<u32>,
    pub(crate) message: String,
}

pub(crate) fn classify(error: &StoreError) -> Failure {
    match std::error::Error::source(error).and_then(|s| s.downcast_ref::<clickhouse::error::Error>()) {
        Some(source) => classify_clickhouse(source),
        None => Failure::Transient,
    }
}

fn classify_clickhouse(error: &clickhouse::error::Error) -> Failure {
    use clickhouse::error::Error as E;
    let rejected = |code| Failure::Rejected(Rejection { code, message: error.to_string() });
    match error {
        E::BadResponse(text) => match exception_code(text) {
            Some(code) if REJECTING_CODES.iter().any(|(c, _)| *c == code) => rejected(Some(code)),
            _ => Failure::Transient,
        },
        // Serializing the row failed in the client: the row cannot be sent, ever.
        E::Custom(_)
        | E::SequenceMustHaveLength
        | E::InvalidUtf8Encoding(_)
        | E::InvalidTagEncoding(_)
        | E::VariantDiscriminatorIsOutOfBound(_) => rejected(None),
        // Network, timeouts, compression, schema and parameter errors, and what later
        // versions of the crate add: rows are kept and retried.
        _ => Failure::Transient,
    }
}

/// The exception code at the start of a ClickHouse error text: `Code: 53, e.displayText() = …`
/// (18.x), `Code: 53. DB::Exception: …` (current), or the bare `53` of the header.
fn exception_code(text: &str) -> Option<u32> {
    let text = text.trim();
    if let Ok(code) = text.parse() {
        return Some(code);
    }
    let digits = text.strip_prefix("Code:")?.trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The name of a rejecting code, for logs and the dead letter; `None` for other codes.
pub(crate) fn code_name(code: u32) -> Option<&'static str> {
    REJECTING_CODES.iter().find(|(c, _)| *c == code).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    use clickhouse::error::Error;

    fn of(error: Error) -> Failure {
        classify(&StoreError::new("insert 3 rows into differences", error))
    }

    #[test]
    fn codes_are_read_from_every_format_the_server_uses() {
        assert_eq!(exception_code("Code: 53, e.displayText() = DB::Exception: Type mismatch"), Some(53));
        assert_eq!(exception_code("Code: 395. DB::Exception: Value passed to 'throwIf' (version 25.8)"), Some(395));
        assert_eq!(exception_code("  27 "), Some(27));
        assert_eq!(exception_code("503 Service Unavailable"), None);
        assert_eq!(exception_code("Code: x"), None);
        assert_eq!(exception_code(""), None);
    }

    #[test]
    fn data_errors_reject_and_server_trouble_is_retried() {
        let rejected = of(Error::BadResponse("Code: 27, e.displayText() = DB::Exception: Cannot parse".into()));
        assert!(matches!(rejected, Failure::Rejected(Rejection { code: Some(27), .. })), "{rejected:?}");
        for transient in [
            Error::BadResponse("Code: 252. DB::Exception: Too many parts".into()),
            Error::BadResponse("Code: 241. DB::Exception: Memory limit exceeded".into()),
            Error::BadResponse("Code: 60. DB::Exception: Table shadowdiff.differences doesn't exist".into()),
            Error::BadResponse("503 Service Unavailable".into()),
            Error::TimedOut,
            Error::Network("connection refused".into()),
            Error::SchemaMismatch("column count".into()),
        ] {
            assert_eq!(of(transient), Failure::Transient);
        }
    }

    #[test]
    fn rows_the_client_cannot_serialize_are_rejected() {
        assert!(matches!(of(Error::Custom("bad".into())), Failure::Rejected(Rejection { code: None, .. })));
    }

    #[test]
    fn rejecting_codes_have_names() {
        assert_eq!(code_name(395), Some("FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"));
        assert_eq!(code_name(252), None);
    }
}
