-- Side effects: the calls each deployment made downstream while answering a request, as its
-- egress tap saw them, and how a shadow's calls differ from the primary's.
--
-- `outbound_calls`: one row per call, numbered per deployment in the order the calls were
-- made (`seq`), for the drill-down page's side-by-side view. Bodies are not kept, only
-- their size and hash; the differences hold the payload paths that changed.
--
-- `outbound_differences`: one row per difference of one shadow's calls from the primary's:
-- `missing_call` (the primary made it, the shadow did not), `extra_call`, `status`,
-- `payload` kinds (the request body's JSON diff kinds, at `path`), `order` (the calls to a
-- destination configured as ordered came in another order), `unmatched` (a stubbed call no
-- recorded call answered). `call` is `METHOD host route`; `write` is 1 for an unsafe method;
-- `noise` is 1 when the secondary differs from the primary the same way in this exchange.
-- Runs unchanged on ClickHouse 18.16 and current releases.
CREATE TABLE IF NOT EXISTS outbound_calls
(
    ts              DateTime,
    request_id      String,
    run             String,
    route           String,
    deployment      String,
    role            String,
    seq             UInt32,
    method          String,
    destination     String,
    call_route      String,
    status          UInt16,
    error           String,
    latency_us      UInt64,
    body_bytes      UInt64,
    body_sha256     String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (deployment, request_id, seq);

CREATE TABLE IF NOT EXISTS outbound_differences
(
    ts              DateTime,
    request_id      String,
    run             String,
    route           String,
    deployment      String,
    role            String,
    call            String,
    kind            String,
    path            String,
    primary_value   String,
    shadow_value    String,
    write           UInt8,
    noise           UInt8
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (deployment, request_id, call, kind, path);
