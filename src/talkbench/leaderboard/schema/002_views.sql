-- Schema version 2: aggregate views. Only complete runs are ever visible through them.

CREATE VIEW complete_runs AS
    SELECT * FROM runs WHERE status = 'complete';

CREATE VIEW clip_values AS
    SELECT r.run_id, r.method, r.benchmark, r.benchmark_version, r.task, r.protocol_hash,
           cr.clip_id, c.language, c.family,
           CASE WHEN c.family IS NULL THEN 'unknown'  -- a clip the benchmark does not list
                WHEN c.family = 'Indo-European' THEN 'indo_european' ELSE 'non_indo_european' END
               AS language_group,
           cr.metric, cr.value
    FROM clip_results cr
    JOIN complete_runs r USING (run_id)
    LEFT JOIN clips c
        ON c.benchmark = r.benchmark AND c.benchmark_version = r.benchmark_version
       AND c.clip_id = cr.clip_id;

-- Mean of per-clip values by language.
CREATE VIEW language_means AS
    SELECT run_id, method, benchmark, benchmark_version, task, protocol_hash, language,
           metric, avg(value) AS value, count(value) AS clips
    FROM clip_values
    GROUP BY run_id, method, benchmark, benchmark_version, task, protocol_hash, language, metric;

-- Mean of per-clip values for Indo-European vs non-Indo-European clips, and over all clips.
CREATE VIEW group_means AS
    SELECT run_id, method, benchmark, benchmark_version, task, protocol_hash, language_group,
           metric, avg(value) AS value, count(value) AS clips
    FROM clip_values
    GROUP BY run_id, method, benchmark, benchmark_version, task, protocol_hash, language_group, metric
    UNION ALL
    SELECT run_id, method, benchmark, benchmark_version, task, protocol_hash, 'all',
           metric, avg(value), count(value)
    FROM clip_values
    GROUP BY run_id, method, benchmark, benchmark_version, task, protocol_hash, metric;
