-- Every verdict the verdict service gave, for the history of each candidate's gates: who
-- asked (the API, a Flagger hook), for which stage, and what it said and why.
CREATE TABLE IF NOT EXISTS verdicts
(
    ts              DateTime,
    candidate       String,
    stage           String,
    verdict         String,
    caller          String,
    samples         UInt64,
    compared        UInt64,
    divergence_rate Float64,
    new_errors      UInt64,
    p95_delta       Float64,
    reasons         String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (candidate, ts);
