-- The stored per-metric aggregates of the (agent, metric, day) keys ?1 lists (a JSON array of
-- triples): one primary-key lookup each.
select s.agent_name, s.metric_name, s.day, s.value_count, s.value_sum, s.value_min,
       s.value_max, s.last_value, s.last_recorded_at
from json_each(?1) as k
join agent_metric_daily_summaries as s
  on s.agent_name = k.value ->> 0 and s.metric_name = k.value ->> 1 and s.day = k.value ->> 2
