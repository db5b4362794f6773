-- Releases the verdict service was asked about: a CD system names each release of a
-- candidate by a revision (Argo Rollouts' pod-template hash, Flagger's checksum), and its
-- verdicts cover only the comparisons made since the first time that revision was asked
-- about. Replicas of the verdict service may each record the same release; the earliest
-- `first_asked` counts. A handful of rows per rollout, kept past the comparisons' retention.
CREATE TABLE IF NOT EXISTS releases
(
    candidate       String,
    revision        String,
    first_asked     DateTime,
    caller          String
)
ENGINE = MergeTree()
ORDER BY (candidate, revision, first_asked);

-- Which release, and which window of comparisons, each verdict covered.
ALTER TABLE verdicts ADD COLUMN revision String DEFAULT '';
ALTER TABLE verdicts ADD COLUMN since DateTime DEFAULT toDateTime(0);
