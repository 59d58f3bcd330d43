-- Schema version 4: who holds each method name. name_key is talkbench.leaderboard.names.name_key
-- (case, accents, punctuation and look-alike letters folded), so names that read as one name
-- are one row, and the primary key refuses a second claim even from a racing writer.
-- owner: 'builtin' | 'external' | 'reported' (talkbench's own names) | 'unkeyed' (submitted
-- before submitter keys) | 'submitter:<sha256 of the submitter key>'. Rows for existing
-- methods and reserved names are filled in by Store.migrate, which can compute the key.

CREATE TABLE method_names (
    name_key    VARCHAR PRIMARY KEY,
    name        VARCHAR NOT NULL,       -- the spelling of the first claim; runs must use it
    owner       VARCHAR NOT NULL,
    claimed_at  TIMESTAMP NOT NULL
);
