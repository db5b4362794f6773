-- Noise, per exchange: differences the secondary shows too. `differences` keeps the raw
-- count; `noise` is the part of it that does not count against a candidate.
ALTER TABLE exchanges ADD COLUMN noise UInt32 DEFAULT 0;
ALTER TABLE differences ADD COLUMN noise UInt8 DEFAULT 0;
