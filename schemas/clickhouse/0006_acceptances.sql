-- Differences a person accepted as intended, per candidate, route and generalised path,
-- and their revocations: an append-only log, so who accepted what, when and why is never
-- lost. The current state of a path is its latest row (`version`, nanoseconds). A handful
-- of rows per rollout, kept past the comparisons' retention.
CREATE TABLE IF NOT EXISTS acceptances
(
    candidate   String,
    route       String,
    path        String,
    -- `accept` or `revoke`.
    action      String,
    reason      String,
    -- The token's name, or `sso:<user>` for a user vouched for by the SSO proxy.
    actor       String,
    at          DateTime,
    -- When an acceptance lapses; 1970-01-01 for never.
    expires     DateTime,
    version     UInt64
)
ENGINE = MergeTree()
ORDER BY (candidate, route, path, version);
