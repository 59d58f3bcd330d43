-- talkbench leaderboard store, schema version 1: the tables.
-- Applied inside one transaction together with its row in schema_migrations.

CREATE TABLE benchmarks (
    name              VARCHAR NOT NULL,
    version           VARCHAR NOT NULL,
    description       VARCHAR,
    clip_list_sha256  VARCHAR NOT NULL,   -- hash of the sorted (clip id, language) list
    superseded_by     VARCHAR,
    spec_json         VARCHAR NOT NULL,   -- the full benchmark spec as shipped
    PRIMARY KEY (name, version)
);

CREATE TABLE clips (
    benchmark          VARCHAR NOT NULL,
    benchmark_version  VARCHAR NOT NULL,
    clip_id            VARCHAR NOT NULL,
    language           VARCHAR NOT NULL,  -- ISO 639-1
    family             VARCHAR NOT NULL,  -- top-level language family
    duration           DOUBLE,
    frames             INTEGER,
    reference_sha256   VARCHAR,           -- sha256 of the reference video file evaluated against
    PRIMARY KEY (benchmark, benchmark_version, clip_id)
);

CREATE TABLE methods (
    name          VARCHAR PRIMARY KEY,
    kind          VARCHAR NOT NULL CHECK (kind IN ('builtin', 'external', 'reported', 'submission')),
    paper         VARCHAR,
    year          INTEGER,
    links         VARCHAR,                -- JSON list
    resolution    INTEGER,
    bitrate_kbps  DOUBLE,
    info_json     VARCHAR NOT NULL        -- the full typed metadata
);

CREATE TABLE runs (
    run_id             VARCHAR PRIMARY KEY,
    method             VARCHAR NOT NULL,
    benchmark          VARCHAR NOT NULL,  -- a benchmark spec name, or the paper's dataset name
    benchmark_version  VARCHAR NOT NULL,  -- 'paper' for reported entries
    task               VARCHAR NOT NULL,  -- speech-driven | reconstruction | cross-identity | ...
    provenance         VARCHAR NOT NULL CHECK (provenance IN ('reported', 'measured')),
    source_paper       VARCHAR,           -- reported: which paper
    source_table       VARCHAR,           -- reported: which table
    row_label          VARCHAR,           -- how the row is labelled in its table
    row_order          INTEGER,
    attributes         VARCHAR NOT NULL,  -- JSON: non-metric columns (resolution, groups, ...)
    protocol_json      VARCHAR NOT NULL,
    protocol_hash      VARCHAR NOT NULL,
    talkbench_version  VARCHAR NOT NULL,
    created_at         TIMESTAMP NOT NULL,
    status             VARCHAR NOT NULL CHECK (status IN ('complete', 'failed'))
);

-- One value per clip per metric (measured runs).
CREATE TABLE clip_results (
    run_id   VARCHAR NOT NULL,
    clip_id  VARCHAR NOT NULL,
    metric   VARCHAR NOT NULL,
    value    DOUBLE,                      -- NULL: the metric had no value for this clip
    PRIMARY KEY (run_id, clip_id, metric)
);

-- Values that are not per-clip: published numbers (reported runs, with the printed text) and
-- dataset-level metrics such as FID / FVD (measured runs). scope: 'all', 'language:xx',
-- 'group:indo_european', 'group:non_indo_european'.
CREATE TABLE aggregates (
    run_id  VARCHAR NOT NULL,
    scope   VARCHAR NOT NULL,
    metric  VARCHAR NOT NULL,
    value   DOUBLE,
    text    VARCHAR,                      -- as printed, for reported cells ("≈ 11", "<1", ...)
    PRIMARY KEY (run_id, scope, metric)
);
