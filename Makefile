# Agent platform. `make help` lists the targets. Deployment targets drive docker compose with
# the settings in .env (docs/deploy.md); dev, test, fmt and lint work on a checkout.
SHELL := /bin/bash
.DEFAULT_GOAL := help

-include .env

# The opt-in PostgreSQL port (POSTGRES_PUBLISH) adds its override file.
COMPOSE := docker compose -f docker-compose.yml $(if $(POSTGRES_PUBLISH),-f docker-compose.postgres-port.yml)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

## --- on the server (docker compose) -----------------------------------------------------

.PHONY: deploy
deploy: check-env nginx/htpasswd ## Build and start everything (postgres, collector, scheduler, nginx)
	@if [ -z "$(COLLECTOR_TOKEN)" ]; then \
	  echo "first deploy: starting the database and the collector to issue the scheduler's token"; \
	  $(COMPOSE) up -d --build postgres collector || exit 1; \
	  for i in $$(seq 1 90); do \
	    $(COMPOSE) exec -T collector curl -fsS http://127.0.0.1:8000/health/ready >/dev/null 2>&1 && break; sleep 2; \
	  done; \
	  token=$$($(COMPOSE) exec -T collector collector token --sub scheduler --ttl 365d) || exit 1; \
	  sed -i "s|^COLLECTOR_TOKEN=.*|COLLECTOR_TOKEN=$$token|" .env; \
	  echo "COLLECTOR_TOKEN written to .env (valid 365 days; renew: make token SUB=scheduler TTL=365d)"; \
	fi
	$(COMPOSE) up -d --build --remove-orphans
	@$(COMPOSE) ps

.PHONY: check-env
check-env: ## Refuse to deploy while .env is missing or still has placeholders
	@test -f .env || { echo ".env is missing: cp .env.example .env, then fill it in (docs/deploy.md)"; exit 1; }
	@if grep -nE '^[A-Z_]+=change-me' .env; then echo "replace the placeholders above in .env first"; exit 1; fi

nginx/htpasswd: .env ## The scheduler page's login, from SCHEDULER_STATUS_USER/PASSWORD
	@test -n "$(SCHEDULER_STATUS_USER)" -a -n "$(SCHEDULER_STATUS_PASSWORD)" || { echo "set SCHEDULER_STATUS_USER and SCHEDULER_STATUS_PASSWORD in .env"; exit 1; }
	@printf '%s:%s\n' "$(SCHEDULER_STATUS_USER)" "$$(openssl passwd -apr1 '$(SCHEDULER_STATUS_PASSWORD)')" > $@
	@chmod 644 $@

.PHONY: logs
logs: ## Follow every service's logs (SERVICE=collector for one)
	$(COMPOSE) logs -f --tail=200 $(SERVICE)

.PHONY: ps
ps: ## Services and their health
	$(COMPOSE) ps

.PHONY: restart-scheduler
restart-scheduler: ## Rebuild and restart the scheduler (new agents, schedules.toml changes)
	$(COMPOSE) up -d --build --no-deps scheduler

.PHONY: shell-collector
shell-collector: ## A shell in the collector's container
	$(COMPOSE) exec collector bash

.PHONY: shell-db
shell-db: ## psql in the database
	$(COMPOSE) exec postgres psql -U "$(POSTGRES_USER)" -d "$(POSTGRES_DB)"

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
	@mkdir -p backups
	$(COMPOSE) exec -T postgres pg_dump -U "$(POSTGRES_USER)" -d "$(POSTGRES_DB)" -Fc > backups/$$(date -u +%Y%m%dT%H%M%SZ).dump
	@ls -lh backups | tail -n 1

.PHONY: restore-db
restore-db: ## Restore a dump: make restore-db FILE=backups/<time>.dump (replaces the data)
	@test -f "$(FILE)" || { echo "usage: make restore-db FILE=backups/<time>.dump"; exit 1; }
	$(COMPOSE) stop collector scheduler
	$(COMPOSE) exec -T postgres pg_restore -U "$(POSTGRES_USER)" -d "$(POSTGRES_DB)" --clean --if-exists --no-owner < "$(FILE)"
	$(COMPOSE) start collector scheduler

## --- on a checkout ---------------------------------------------------------------------

.PHONY: dev
dev: ## Run the platform locally: collector on data/dev.db (SQLite) + scheduler with the example agents
	cargo run -p platform

.PHONY: test
test: ## Run every test (uses DATABASE_URL, else a local server, else a throwaway PostgreSQL)
	scripts/with-postgres.sh -- cargo test --workspace --locked

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
