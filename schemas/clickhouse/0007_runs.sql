-- Replay runs (shadowctl replay): every row of a replayed exchange carries its run's id, and
-- its request id is `<run>:<recorded request id>`, so runs never replace each other's rows or
-- the live traffic's. Live rows have an empty run; verdicts judge one run, or the live
-- traffic, never both.
ALTER TABLE exchanges ADD COLUMN run String DEFAULT '';
ALTER TABLE differences ADD COLUMN run String DEFAULT '';
ALTER TABLE samples ADD COLUMN run String DEFAULT '';
