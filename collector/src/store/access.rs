//! Which agents a caller may see, as a condition every listing adds to its query.

use sea_query::{Condition, Expr, ExprTrait, Func};

use crate::domain::AgentPattern;

/// Which agents a caller may see: every agent, or those matching the token's patterns.
#[derive(Debug, Clone, Default)]
pub struct AgentAccess(Option<Vec<AgentPattern>>);

impl AgentAccess {
    pub fn new(patterns: Option<&[AgentPattern]>) -> Self {
        Self(patterns.map(<[AgentPattern]>::to_vec))
    }

    /// The SQL condition on `column`, or `None` when every agent is visible.
    pub(super) fn condition<C>(&self, column: C) -> Option<Condition>
    where
        C: sea_query::IntoColumnRef + Copy,
    {
        let patterns = self.0.as_ref()?;
        let mut any = Condition::any();
        for pattern in patterns {
            any = any.add(match pattern {
                AgentPattern::Exact(name) => Expr::col(column).eq(name.as_str()),
                // `substr`, not LIKE: no wildcards to escape, and case-sensitive on SQLite too.
                AgentPattern::Prefix(prefix) => Expr::from(
                    Func::cust("substr")
                        .arg(Expr::col(column))
                        .arg(1)
                        .arg(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX)),
                )
                .eq(prefix.as_str()),
            });
        }
        // An empty list allows nothing.
        Some(if patterns.is_empty() {
            Condition::all().add(Expr::cust("1 = 0"))
        } else {
            any
        })
    }
}
