//! Missed and late slots: recorded by the watcher, listed newest first.

use agent_sdk::wire::{LateSlot, MissedSlot};
use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sqlx::FromRow;

use super::tables::{LateSlots, MissedSlots};
use super::{AgentAccess, Store, StoreError, Tx};
use crate::domain::AgentName;

#[derive(FromRow)]
struct MissedRow {
    id: i64,
    agent_name: String,
    slot: DateTime<Utc>,
    detected_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct LateRow {
    id: i64,
    agent_name: String,
    slot: DateTime<Utc>,
    started_at: DateTime<Utc>,
    detected_at: DateTime<Utc>,
}

impl Store {
    /// Missed slots, newest detection first.
    pub async fn list_missed(
        &self,
        agent: Option<&AgentName>,
        access: &AgentAccess,
        limit: u64,
    ) -> Result<Vec<MissedSlot>, StoreError> {
        use MissedSlots as M;
        let columns = [M::Id, M::AgentName, M::Slot, M::DetectedAt];
        let keys = [M::AgentName, M::DetectedAt, M::Id];
        let select = slots_listing(M::Table, columns, keys, agent, access, limit);
        let rows: Vec<MissedRow> = self.fetch(&select).await?;
        Ok(rows
            .into_iter()
            .map(|r| MissedSlot {
                id: r.id,
                agent_name: r.agent_name,
                slot: r.slot,
                detected_at: r.detected_at,
            })
            .collect())
    }

    /// Slots answered late, newest detection first.
    pub async fn list_late(
        &self,
        agent: Option<&AgentName>,
        access: &AgentAccess,
        limit: u64,
    ) -> Result<Vec<LateSlot>, StoreError> {
        use LateSlots as L;
        let columns = [L::Id, L::AgentName, L::Slot, L::StartedAt, L::DetectedAt];
        let keys = [L::AgentName, L::DetectedAt, L::Id];
        let select = slots_listing(L::Table, columns, keys, agent, access, limit);
        let rows: Vec<LateRow> = self.fetch(&select).await?;
        Ok(rows
            .into_iter()
            .map(|r| LateSlot {
                id: r.id,
                agent_name: r.agent_name,
                slot: r.slot,
                started_at: r.started_at,
                detected_at: r.detected_at,
            })
            .collect())
    }
}

impl Tx {
    /// Records `agent`'s `slot` as missed at `now`: 1 when new, 0 when recorded before.
    pub(crate) async fn record_missed(
        &mut self,
        agent: &str,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut insert = Query::insert();
        insert
            .into_table(MissedSlots::Table)
            .columns([
                MissedSlots::AgentName,
                MissedSlots::Slot,
                MissedSlots::DetectedAt,
            ])
            .values_panic([agent.into(), slot.into(), now.into()])
            .on_conflict(
                OnConflict::columns([MissedSlots::AgentName, MissedSlots::Slot])
                    .do_nothing()
                    .to_owned(),
            );
        Ok(usize::try_from(self.execute(&insert).await?).unwrap_or(0))
    }

    /// Records `agent`'s `slot` as answered late by a run `started` then: 1 when new.
    pub(crate) async fn record_late(
        &mut self,
        agent: &str,
        slot: DateTime<Utc>,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut insert = Query::insert();
        insert
            .into_table(LateSlots::Table)
            .columns([
                LateSlots::AgentName,
                LateSlots::Slot,
                LateSlots::StartedAt,
                LateSlots::DetectedAt,
            ])
            .values_panic([agent.into(), slot.into(), started.into(), now.into()])
            .on_conflict(
                OnConflict::columns([LateSlots::AgentName, LateSlots::Slot])
                    .do_nothing()
                    .to_owned(),
            );
        Ok(usize::try_from(self.execute(&insert).await?).unwrap_or(0))
    }
}

/// `columns` of a slots table (`missed_slots`, `late_slots`) that the caller may read, of
/// `agent` or all, newest detection first; `keys`: its agent, detection time and id columns.
fn slots_listing<C, const N: usize>(
    table: C,
    columns: [C; N],
    [agent_name, detected_at, id]: [C; 3],
    agent: Option<&AgentName>,
    access: &AgentAccess,
    limit: u64,
) -> sea_query::SelectStatement
where
    C: sea_query::Iden + Copy + 'static,
{
    let mut select = Query::select();
    select
        .columns(columns)
        .from(table)
        .and_where_option(agent.map(|a| Expr::col(agent_name).eq(a.as_str())))
        .order_by(detected_at, Order::Desc)
        .order_by(id, Order::Desc)
        .limit(limit);
    if let Some(access) = access.condition(agent_name) {
        select.cond_where(access);
    }
    select
}
