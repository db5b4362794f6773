-- The mirror profile's rollout stage each comparison was made in (`shadow`, `1`, `10`, `50`,
-- `100`), so a verdict can cover "since this stage began".
ALTER TABLE exchanges ADD COLUMN stage String DEFAULT '';

-- Full captured bodies of a capped sample of divergent exchanges, per route and minute, for
-- the drill-down page: one row per leg (the primary and each shadow that diverged). Bodies
-- are stored with their Content-Encoding undone; `truncated` marks a capture cut at the tap's cap.
CREATE TABLE IF NOT EXISTS samples
(
    ts              DateTime,
    request_id      String,
    route           String,
    method          String,
    deployment      String,
    role            String,
    status          UInt16,
    content_type    String,
    headers         String,
    body            String,
    body_length     UInt64,
    truncated       UInt8
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (request_id, deployment);
