"""schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

The OpenAPI document declares every rule a JSON Schema can state. A few rules relate two values
or the clock, and no schema can state them; the document says them in words:

- GET /runs and GET /metrics: `from` must not be after `to`;
- GET /summaries: the same, and the range spans at most 366 days;
- POST /metrics: `finished_at` not before `started_at`; no timestamp more than a day in the
  future; `cancelled` only with an `error`; a number must fit the storable range (finite in a
  double, at most 64 characters, at most 1000 decimal places);
- POST /runs: `deadline` after `started_at` and at most 7 days after it; no timestamp more
  than a day in the future;
- POST /metrics/batch: a bad report is refused alone, in its result (the request is 200).
- PUT /agents/{name}/expectation: `cron` or `every`, not both; `timezone` only with `cron`;
  `cron` a cron expression, `timezone` an IANA zone name, `every` and `grace` durations
  (`90s`, `1h`) within a year: syntaxes the document names in words.
- POST /jobs/{job}/pause: `until` in the future (the clock).
- POST /silences: `until` in the future and at most 90 days on (the clock); each of `agents` an
  agent name or a prefix ending in `*` (a syntax the document names in words).
- POST /jobs/{job}/backfill: `to` not before `from` nor in the future, and at most 1000 slots
  of the job's cron between them.
- PUT /expectations/scheduler: the same for each job (`jobs[i].cron`, `.timezone`, `.timeout`
  more than 0s, `.catchup_window` and `.jitter` durations), and no job name given twice.

One answer concerns state, not data: a valid start or report whose `run_key` another run holds
is refused with 409 (`run_claimed`, `run_key_reused`), as the document says; the generator
repeats keys.

Only a refusal that names exactly one of those rules is dropped; any other refusal of a request
the document allows, or acceptance of one it forbids, still fails the run.
"""

import re

import schemathesis

# (field, message fragment) of each refusal that states a rule no schema can hold; the field is
# a prefix, or a regular expression when it starts with ^.
CROSS_FIELD_RULES = {
    "GET /runs": [("from", "must not be after `to`")],
    "GET /metrics": [("from", "must not be after `to`")],
    "GET /summaries": [
        ("from", "must not be after `to`"),
        ("from", "the range may span at most 366 days"),
    ],
    "POST /metrics": [
        ("finished_at", "is before started_at"),
        ("started_at", "more than a day in the future"),
        ("finished_at", "more than a day in the future"),
        ("scheduled_for", "more than a day in the future"),
        ("metrics.", "outside the storable range"),
        ("metrics.", "number literal longer than"),
        ("metrics.", "decimal places"),
        ("error", "a cancelled run must say who cancelled it and why"),
    ],
    "POST /runs": [
        ("deadline", "is not after started_at"),
        ("deadline", "days after started_at"),
        ("started_at", "more than a day in the future"),
        ("scheduled_for", "more than a day in the future"),
    ],
    "PUT /agents/{name}/expectation": [
        ("cron", ""),
        ("timezone", "is not an IANA time zone"),
        ("timezone", "timezone goes with cron"),
        ("every", "give either cron or every"),
        ("every", "is not a duration like"),
        ("every", "is shorter than"),
        ("every", "is longer than a year"),
        ("grace", "is not a duration like"),
        ("grace", "is longer than a year"),
    ],
    "POST /jobs/{job}/pause": [("until", "must be in the future")],
    "POST /silences": [
        ("until", "must be in the future"),
        ("until", "must be at most 90 days"),
        (r"^agents\[\d+\]$", "invalid agent pattern"),
    ],
    "POST /jobs/{job}/backfill": [
        ("to", "is before `from`"),
        ("to", "is in the future"),
        ("to", "the range holds more than"),
    ],
    "PUT /expectations/scheduler": [
        (r"^jobs\[\d+\]\.cron$", ""),
        (r"^jobs\[\d+\]\.timezone$", "is not an IANA time zone"),
        (r"^jobs\[\d+\]\.timeout$", "must be more than 0s"),
        (r"^jobs\[\d+\]\.timeout$", "not a duration like"),
        (r"^jobs\[\d+\]\.job$", "is given twice"),
        (r"^jobs\[\d+\]\.catchup_window$", "not a length like"),
        (r"^jobs\[\d+\]\.jitter$", "not a duration like"),
    ],
}

# Codes of 409 answers: the run_key is held by another run (state, not data).
KEY_HELD = ("run_claimed", "run_key_reused")


def _fields(response):
    try:
        return response.json()["error"]["details"]["fields"]
    except (ValueError, KeyError, TypeError):
        return None


def _only_cross_field_rules(label, response):
    rules = CROSS_FIELD_RULES.get(label, [])
    fields = _fields(response)
    if not rules or not fields:
        return False
    return all(
        any(_field_matches(field, f.get("field", "")) and fragment in f.get("message", "") for field, fragment in rules)
        for f in fields
    )


def _field_matches(rule, field):
    if rule.startswith("^"):
        return re.fullmatch(rule, field) is not None
    return field.startswith(rule)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """False drops the failure: see the module's docstring for which ones, and why."""
    label = case.operation.label
    if failure.code == "ST202" and response.status_code == 409:
        try:
            return response.json()["error"]["code"] not in KEY_HELD
        except (ValueError, KeyError, TypeError):
            return True
    if failure.code == "ST202" and response.status_code in (400, 422):
        return not _only_cross_field_rules(label, response)
    if failure.code == "ST201" and label == "POST /metrics/batch" and response.status_code == 200:
        # The schema-violating report was refused alone, in its own result.
        try:
            results = response.json()["results"]
        except (ValueError, KeyError, TypeError):
            return True
        return not any(r.get("status") in (400, 422) for r in results)
    return True
