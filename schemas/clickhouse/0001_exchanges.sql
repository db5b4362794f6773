-- One row per request x shadow deployment (secondary or candidate): the comparison's summary.
-- ReplacingMergeTree on (deployment, request_id): a replayed batch after a crash rewrites the
-- same rows, and readers use FINAL (or argMax) to see each comparison once.
-- Runs unchanged on ClickHouse 18.16 and current releases.
CREATE TABLE IF NOT EXISTS exchanges
(
    ts                  DateTime,
    request_id          String,
    route               String,
    method              String,
    deployment          String,
    role                String,
    outcome             String,
    primary_status      UInt16,
    shadow_status       UInt16,
    primary_error       String,
    shadow_error        String,
    primary_latency_us  UInt64,
    shadow_latency_us   UInt64,
    latency_delta_us    Int64,
    status_differs      UInt8,
    body_differs        UInt8,
    differences         UInt32
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (deployment, request_id);

-- One row per differing path of one comparison.
CREATE TABLE IF NOT EXISTS differences
(
    ts              DateTime,
    request_id      String,
    route           String,
    deployment      String,
    role            String,
    kind            String,
    path            String,
    primary_value   String,
    shadow_value    String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (deployment, request_id, path, kind);
