-- Bootstrap 95% intervals over clips beside each measured aggregate (NULL for reported cells
-- and for older runs); the seed and replicate count are in the run's protocol.
ALTER TABLE aggregates ADD COLUMN ci_low DOUBLE;
ALTER TABLE aggregates ADD COLUMN ci_high DOUBLE;
