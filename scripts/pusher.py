#!/usr/bin/env python3
"""Steady load for the fault tests (scripts/faults.sh): threads push run reports, each with its
own run_key, and retry every report until the collector acknowledges it (200/201), honouring
Retry-After. Writes what happened as JSON: the acknowledged keys, every status seen, and any
report that was refused or given up on."""

import argparse
import collections
import datetime
import json
import threading
import time
import urllib.error
import urllib.request
import uuid


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, required=True, help="how long new reports are made")
    parser.add_argument("--give-up", type=float, default=120, help="retry one report this long at most")
    parser.add_argument("--rate", type=float, default=0, help="reports per second in all (0: as fast as possible)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    lock = threading.Lock()
    acked, refused, gave_up = [], [], []
    statuses = collections.Counter()
    deadline = time.monotonic() + args.seconds

    def report(key):
        now = datetime.datetime.now(datetime.timezone.utc)
        return json.dumps({
            "agent_name": "pusher",
            "run_key": key,
            "metrics": {"n": 1, "ratio": 0.5, "label": "fault-test"},
            "started_at": (now - datetime.timedelta(seconds=1)).isoformat(),
            "finished_at": now.isoformat(),
            "error": None,
        }).encode()

    def push(body):
        request = urllib.request.Request(
            args.url + "/metrics", data=body, method="POST",
            headers={"Authorization": "Bearer " + args.token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, None
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Retry-After")
        except Exception:  # refused, reset, timed out: the collector is down or restarting
            return 0, None

    interval = args.threads / args.rate if args.rate > 0 else 0

    def worker():
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            if interval:
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            key = str(uuid.uuid4())
            # A retry sends the same report: a different one under a stored key is refused (409).
            body = report(key)
            started = time.monotonic()
            while True:
                status, retry_after = push(body)
                with lock:
                    statuses[status] += 1
                if status in (200, 201):
                    with lock:
                        acked.append(key)
                    break
                if 400 <= status < 500 and status not in (408, 429):
                    with lock:
                        refused.append([key, status])
                    break
                if time.monotonic() - started > args.give_up:
                    with lock:
                        gave_up.append(key)
                    break
                time.sleep(min(float(retry_after or 0.2), 1.0))

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(args.out, "w") as out:
        json.dump({"acked": acked, "refused": refused, "gave_up": gave_up,
                   "statuses": {str(k): v for k, v in statuses.items()}}, out)


if __name__ == "__main__":
    main()
