# Agent platform: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

COLLECTOR := cargo run --quiet --release -p collector --

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: dev
dev: ## Run the collector locally (starts a local PostgreSQL if needed), print a token and a curl line
	@scripts/dev.sh

.PHONY: test
test: ## Run every test (uses DATABASE_URL, else a local server, else a throwaway PostgreSQL)
	scripts/with-postgres.sh -- cargo test --workspace --locked

.PHONY: fmt
fmt: ## Format the code
	cargo fmt --all

.PHONY: lint
lint: ## Check formatting and run clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

.PHONY: migrate
migrate: ## Apply database migrations (DATABASE_URL)
	$(COLLECTOR) migrate

.PHONY: token
token: ## Print a bearer token: make token SUB=name [SCOPE=ingest|read] [AGENT=pattern] [TTL=30d]
	@$(COLLECTOR) token --sub "$${SUB:?set SUB=name}" --scope "$${SCOPE:-ingest}" \
		$${AGENT:+--agent "$$AGENT"} --ttl "$${TTL:-30d}"

.PHONY: readonly-user
readonly-user: ## Create or update the dashboard's read-only role (WEBAPP_READONLY_PASSWORD)
	$(COLLECTOR) grant-readonly --role "$${ROLE:-webapp_readonly}"

.PHONY: new-agent
new-agent: ## Scaffold agents/NAME and wire it into the scheduler: make new-agent NAME=my_agent
	@scripts/new-agent.sh "$(NAME)"
