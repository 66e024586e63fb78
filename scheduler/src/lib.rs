//! The scheduler: runs registered agents on cron schedules and delivers their reports.
pub mod cron;
