//! The audit log: every action taken on a job, a run or a silence, by whom,
//! with its note; written in the transaction of the change it records, listed by `GET /audit`.

use agent_sdk::wire::{AuditAction, AuditEntry};
use chrono::{DateTime, SubsecRound, Utc};
use sea_query::{Expr, ExprTrait, Order, Query};
use serde_json::Value;
use sqlx::FromRow;
use uuid::Uuid;

use super::tables::AuditLog;
use super::{AgentAccess, Store, StoreError, Tx};

/// An action for the audit log, written with the change it records.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    pub actor: &'a str,
    pub action: AuditAction,
    pub job: &'a str,
    pub run_key: Option<Uuid>,
    pub note: Option<&'a str>,
    pub details: Option<Value>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, FromRow)]
struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    job: Option<String>,
    silence_id: Option<i64>,
    run_key: Option<Uuid>,
    note: Option<String>,
    details: Option<String>,
}

impl Store {
    /// The latest `limit` actions on the jobs `access` allows, newest first, before the entry
    /// `before` when given.
    pub async fn list_audit(
        &self,
        access: &AgentAccess,
        job: Option<&str>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut select = Query::select();
        select
            .columns([
                AuditLog::Id,
                AuditLog::At,
                AuditLog::Actor,
                AuditLog::Action,
                AuditLog::Job,
                AuditLog::SilenceId,
                AuditLog::RunKey,
                AuditLog::Note,
                AuditLog::Details,
            ])
            .from(AuditLog::Table)
            .order_by(AuditLog::Id, Order::Desc)
            .limit(limit);
        if let Some(job) = job {
            select.and_where(Expr::col(AuditLog::Job).eq(job));
        }
        if let Some(before) = before {
            select.and_where(Expr::col(AuditLog::Id).lt(before));
        }
        if let Some(access) = access.condition(AuditLog::Job) {
            select.cond_where(access);
        }
        let rows: Vec<AuditRow> = self.fetch(&select).await?;
        rows.into_iter()
            .map(|row| {
                let action = AuditAction::parse(&row.action).ok_or_else(|| {
                    StoreError::internal(
                        "reading the audit log",
                        format!("unknown action {:?}", row.action),
                    )
                })?;
                Ok(AuditEntry {
                    id: row.id,
                    at: row.at,
                    actor: row.actor,
                    action,
                    job: row.job,
                    silence_id: row.silence_id,
                    run_key: row.run_key,
                    note: row.note,
                    details: row.details.and_then(|d| serde_json::from_str(&d).ok()),
                })
            })
            .collect()
    }
}

impl Tx {
    /// Writes `audit`'s row.
    pub(crate) async fn audit(&mut self, audit: &Audit<'_>) -> Result<(), StoreError> {
        self.write_audit(audit, Some(audit.job), None).await
    }

    /// Writes the audit row of a silence made or ended (`action`: `silence`, `unsilence`).
    pub(crate) async fn audit_silence(
        &mut self,
        actor: &str,
        action: AuditAction,
        silence_id: i64,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let audit = Audit {
            actor,
            action,
            job: "",
            run_key: None,
            note,
            details: None,
            at,
        };
        self.write_audit(&audit, None, Some(silence_id)).await
    }

    /// `audit`'s row, about `job` or `silence_id` (`audit.job` is read from `job` only).
    async fn write_audit(
        &mut self,
        audit: &Audit<'_>,
        job: Option<&str>,
        silence_id: Option<i64>,
    ) -> Result<(), StoreError> {
        let details = audit.details.as_ref().map(Value::to_string);
        self.execute(
            Query::insert()
                .into_table(AuditLog::Table)
                .columns([
                    AuditLog::At,
                    AuditLog::Actor,
                    AuditLog::Action,
                    AuditLog::Job,
                    AuditLog::SilenceId,
                    AuditLog::RunKey,
                    AuditLog::Note,
                    AuditLog::Details,
                ])
                .values_panic([
                    audit.at.trunc_subsecs(6).into(),
                    audit.actor.into(),
                    audit.action.as_str().into(),
                    job.into(),
                    silence_id.into(),
                    audit.run_key.into(),
                    audit.note.into(),
                    details.into(),
                ]),
        )
        .await?;
        Ok(())
    }
}
