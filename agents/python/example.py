#!/usr/bin/env python3
"""A Python agent run by the `command` agent: a small LangGraph-style graph of nodes.

The graph runs plan -> research -> summarize over a shared state, the way a LangGraph
`StateGraph` would; swap the node bodies for real LLM calls (and `pip install langgraph`)
without changing the contract with the platform:

- input: the schedule entry's `params.input` as JSON on stdin;
- output: one JSON object of metrics on stdout (numbers, strings, booleans);
- failure: a non-zero exit, with the reason on stderr.

Only the standard library is used, so it runs wherever python3 does.
"""

import json
import os
import sys
import time


def plan(state):
    topic = state["topic"]
    state["steps"] = [f"look up {topic}", f"compare {topic}", f"summarize {topic}"]
    return state


def research(state):
    # Stand-in for tool calls: one "document" per planned step.
    state["documents"] = [f"notes on: {step}" for step in state["steps"]]
    state["tokens"] = sum(len(doc.split()) for doc in state["documents"]) * 13
    return state


def summarize(state):
    state["summary"] = f"{len(state['documents'])} findings about {state['topic']}"
    return state


GRAPH = [("plan", plan), ("research", research), ("summarize", summarize)]


def main():
    raw = sys.stdin.read().strip() or "{}"
    params = json.loads(raw)
    if params.get("fail"):
        print(f"asked to fail: {params['fail']}", file=sys.stderr)
        return 2
    state = {"topic": params.get("topic", "the weather")}
    started = time.monotonic()
    for name, node in GRAPH:
        state = node(state)
        print(f"node {name} done", file=sys.stderr)  # logs go to stderr, never stdout
    print(json.dumps({
        "nodes_executed": len(GRAPH),
        "documents": len(state["documents"]),
        "tokens_estimated": state["tokens"],
        "summary": state["summary"],
        "graph_ms": round((time.monotonic() - started) * 1000, 3),
        "run_key_seen": bool(os.environ.get("AGENT_RUN_KEY")),
        "ok": True,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
