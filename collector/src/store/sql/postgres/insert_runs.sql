-- The runs of a batch whose run_key is new for their agent (a key is unique per agent) or whose
-- run is `running` (started by POST /runs: the report completes it; running rows are in no summary yet, so it is counted
-- now, once), and their metrics, as the CTEs `new_runs` and `new_metrics` that the summary rules
-- (daily.sql, latest.sql) read: store_batch in store/runs/postgres.rs puts the three together in
-- one statement (one round trip, atomic on its own). The columns travel as arrays, so the
-- statement is prepared once per connection whatever the batch size. Numbers travel as text and
-- are cast by PostgreSQL, so each decimal is stored exactly as sent.
new_runs as (
    insert into agent_runs
        (run_key, agent_name, started_at, finished_at, status, error_message, duration_ms,
         trigger, scheduled_for, host, metric_count)
    select * from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                         $5::text[], $6::text[], $7::int8[], $8::text[], $9::timestamptz[],
                         $10::text[], $11::int4[])
    on conflict (run_key, agent_name) do update set
        started_at    = excluded.started_at,
        finished_at   = excluded.finished_at,
        status        = excluded.status,
        error_message = excluded.error_message,
        duration_ms   = excluded.duration_ms,
        trigger       = excluded.trigger,
        scheduled_for = coalesce(excluded.scheduled_for, agent_runs.scheduled_for),
        host          = coalesce(excluded.host, agent_runs.host),
        metric_count  = excluded.metric_count,
        received_at   = now()
    where agent_runs.status = 'running'
    returning id, run_key, agent_name, started_at, finished_at, status, duration_ms
),
new_metrics as (
    insert into agent_metrics
        (run_id, agent_name, metric_name, metric_value, metric_text, recorded_at)
    select r.id, r.agent_name, m.metric_name, m.literal::numeric, m.text_value, r.finished_at
    from unnest($12::uuid[], $16::text[], $13::text[], $14::text[], $15::text[]) with ordinality
             as m (run_key, agent_name, metric_name, literal, text_value, position)
    join new_runs r using (run_key, agent_name)
    order by r.id, m.position
    returning id, run_id, agent_name, metric_name, metric_value, recorded_at
)
