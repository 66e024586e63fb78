-- The watcher's bench data (bench/watcher.sh, bench/compare.sh): :expectations expectations,
-- half a period of 1 h, half a cron every 5 minutes in Europe/Madrid, each 20 minutes behind;
-- a day of summaries for each agent, changed over the last day as agents run; :incidents open
-- incidents.
insert into agent_expectations (name, agent_name, cron, timezone, every_seconds, grace_seconds, source,
                                created_at, updated_at, checked_until, next_check_at)
select 'expected_' || g, 'expected_' || g,
       case when g % 2 = 0 then '*/5 * * * *' end, case when g % 2 = 0 then 'Europe/Madrid' end,
       case when g % 2 = 1 then 3600 end, 600, 'api',
       now() - interval '20 minutes', now() - interval '20 minutes', now() - interval '20 minutes',
       now() - interval '20 minutes'
from generate_series(1, :expectations) g;
insert into agent_daily_summaries (agent_name, day, run_count, success_count, failure_count,
                                   total_duration_ms, min_duration_ms, max_duration_ms,
                                   last_run_at, last_status, last_success_at, updated_at)
select 'expected_' || g, current_date, 1, 1, 0, 1000, 1000, 1000,
       now() - interval '5 minutes', 'success', now() - interval '5 minutes',
       now() - (g % 1440) * interval '1 minute'
from generate_series(1, :expectations) g;
insert into incidents (agent_name, kind, opened_at, summary)
select 'expected_' || g, 'slow', now() - interval '1 hour', 'bench'
from generate_series(1, :incidents) g;
analyze agent_expectations, agent_daily_summaries, incidents;
