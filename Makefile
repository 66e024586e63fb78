# Agent platform. `make help` lists the targets. Server targets drive docker compose through
# deploy/ops.sh with the settings in .env (docs/deploy.md); dev, test, fmt and lint work on a
# checkout. .env is never read as make syntax: its values may hold # $ quotes and spaces.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# docker compose reads COMPOSE_FILE (and the rest) from .env itself, so a plain `docker compose …`
# acts on the same files as these targets.
COMPOSE := docker compose
OPS := deploy/ops.sh

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_/-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

## --- on the server (docker compose) -----------------------------------------------------

.PHONY: deploy
deploy: ## Build and start everything; issues the scheduler's token and the certificate when missing
	@$(OPS) deploy

.PHONY: check-env
check-env: ## Refuse to deploy while .env is missing, has placeholders or contradicts itself
	@$(OPS) check-env

nginx/htpasswd: .env ## The scheduler page's login, from SCHEDULER_STATUS_USER/PASSWORD
	@$(OPS) htpasswd

.PHONY: rotate-scheduler-token
rotate-scheduler-token: ## New scheduler token (TTL=365d), in use at once, spool kept
	@$(OPS) rotate-token

.PHONY: logs
logs: ## Follow every service's logs (SERVICE=collector for one)
	$(COMPOSE) logs -f --tail=200 $(SERVICE)

.PHONY: ps
ps: ## Services and their health
	$(COMPOSE) ps

.PHONY: restart-scheduler
restart-scheduler: ## Rebuild and restart the scheduler (new agents, schedules.toml changes)
	$(COMPOSE) up -d --build --no-deps scheduler
	@$(OPS) wait-healthy scheduler

.PHONY: shell-collector
shell-collector: ## A shell in the collector's container
	$(COMPOSE) exec collector bash

.PHONY: shell-db
shell-db: ## psql in the database
	@$(OPS) shell-db

.PHONY: migrate
migrate: ## Apply database migrations (serve also does, at start)
	$(COMPOSE) run --rm --no-deps collector migrate

.PHONY: token
token: ## Print a token: make token SUB=name [SCOPE=ingest|read] [AGENT=pattern] [TTL=30d]
	@$(COMPOSE) exec -T collector collector token --sub "$${SUB:?set SUB=name}" --scope "$${SCOPE:-ingest}" \
		$${AGENT:+--agent "$$AGENT"} --ttl "$${TTL:-30d}"

.PHONY: readonly-user
readonly-user: ## Create/update the web app's read-only role (WEBAPP_READONLY_PASSWORD; ROLE=webapp_readonly)
	$(COMPOSE) exec -T collector collector grant-readonly --role "$${ROLE:-webapp_readonly}"

.PHONY: backup-db
backup-db: ## Dump the database to backups/<time>.dump (pg_dump custom format)
	@$(OPS) backup

.PHONY: restore-db
restore-db: ## Restore a dump: make restore-db FILE=backups/<time>.dump (replaces the data)
	@$(OPS) restore "$(FILE)"

## --- on a checkout ---------------------------------------------------------------------

.PHONY: dev
dev: ## Run the platform locally: collector on data/dev.db (SQLite) + scheduler with the example agents
	cargo run -p platform

.PHONY: test
test: ## Run every test (uses DATABASE_URL, else a local server, else a throwaway PostgreSQL; installs Chromium for the console's browser test where missing)
	scripts/ensure-browser.sh
	scripts/with-postgres.sh -- cargo test --workspace --locked

.PHONY: screenshots
screenshots: ## Retake the console's screenshots in docs/console/ (the browser test, against the example agents)
	scripts/ensure-browser.sh
	CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console cargo test --locked -p platform --test console

.PHONY: new-agent
new-agent: ## Scaffold agents/NAME and wire it into the scheduler: make new-agent NAME=my_agent
	@scripts/new-agent.sh "$(NAME)"

.PHONY: fmt
fmt: ## Format the code
	cargo fmt --all

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
