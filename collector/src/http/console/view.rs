//! The console's frame and the small pieces every page uses: times, states, statuses.

use agent_sdk::wire::{AgentState, RunStatus};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

/// The stylesheet and script, with the collector's version so that an upgrade reloads them.
const CSS_PATH: &str = concat!("/ui/assets/console.css?v=", env!("CARGO_PKG_VERSION"));
const JS_PATH: &str = concat!("/ui/assets/console.js?v=", env!("CARGO_PKG_VERSION"));

/// A whole page: `main` is what the script refreshes in place every few seconds.
pub(super) fn page(title: &str, signed_in: bool, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · agent platform" }
                link rel="stylesheet" href=(CSS_PATH);
                @if signed_in { script src=(JS_PATH) defer {} }
            }
            body {
                header {
                    a class="brand" href="/ui" { "agent platform" }
                    @if signed_in {
                        nav {
                            a href="/ui" { "Agents" }
                            a href="/ui/incidents" { "Incidents" }
                            a href="/ui/audit" { "Audit" }
                        }
                        form class="signout" method="post" action="/ui/logout" {
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" { (main) }
            }
        }
    }
}

/// The sign-in form, with what went wrong last time.
pub(super) fn sign_in(message: Option<&str>) -> Markup {
    page(
        "Sign in",
        false,
        html! {
            section class="signin" {
                h1 { "Sign in" }
                @if let Some(message) = message {
                    p class="error" role="alert" { (message) }
                }
                form method="post" action="/ui/login" {
                    label for="token" { "A token of scope " code { "read" } " (or " code { "operate" } ", to act)" }
                    textarea id="token" name="token" rows="4" required autocomplete="off"
                        spellcheck="false" placeholder="eyJ…" {}
                    button type="submit" { "Sign in" }
                }
                p class="hint" {
                    "Make one on the collector's host with "
                    code { "collector token --sub YOUR_NAME --scope read" }
                    " (add " code { "--agent 'team_a_*'" } " to limit it to some agents). "
                    "It is kept in a cookie only this site can read; sign out clears it."
                }
            }
        },
    )
}

/// A time, shown in UTC; the script rewrites it in the browser's timezone and keeps UTC on
/// hover.
pub(super) fn time(at: DateTime<Utc>) -> Markup {
    let utc = at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) { (utc) }
    }
}

/// How long ago, for people: `45 s ago`, `3 min ago`, `5 h ago`, `2 d ago`; `in 3 min` ahead.
pub(super) fn age(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let millis = (now - at).num_milliseconds();
    let (ahead, s) = (millis < 0, (millis.unsigned_abs() + 500) / 1000);
    let span = match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    if ahead {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// A time with its age beside it.
pub(super) fn time_ago(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { (time(at)) " " span class="age" { "(" (age(at, now)) ")" } }
}

/// An agent's last finished run: its status and when, or "never".
pub(super) fn last_run(
    last_status: Option<RunStatus>,
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Markup {
    match (last_status, at) {
        (Some(last), Some(at)) => html! { (status(last)) " " (time_ago(at, now)) },
        _ => html! { "never" },
    }
}

pub(super) fn status(status: RunStatus) -> Markup {
    html! { span class=(format!("badge {}", status.as_str())) { (status.as_str()) } }
}

pub(super) fn state(state: Option<AgentState>) -> Markup {
    let name = state.map_or("new", state_name);
    html! { span class=(format!("badge {name}")) { (name) } }
}

pub(super) fn state_name(state: AgentState) -> &'static str {
    match state {
        AgentState::Ok => "ok",
        AgentState::New => "new",
        AgentState::Running => "running",
        AgentState::Failing => "failing",
        AgentState::Overdue => "overdue",
        AgentState::Missed => "missed",
        AgentState::Stale => "stale",
        AgentState::Slow => "slow",
    }
}

/// A page's "nothing here" line.
pub(super) fn empty(text: &str) -> Markup {
    html! { p class="empty" { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let at = |s: i64| now - chrono::TimeDelta::seconds(s);
        assert_eq!(age(at(45), now), "45 s ago");
        assert_eq!(age(at(180), now), "3 min ago");
        assert_eq!(age(at(5 * 3600), now), "5 h ago");
        assert_eq!(age(at(2 * 86_400), now), "2 d ago");
        assert_eq!(age(at(-180), now), "in 3 min");
    }

    #[test]
    fn the_sign_in_message_is_escaped() {
        let page = sign_in(Some("<script>x</script>")).into_string();
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!page.contains("<script>x"));
    }
}
