//! The composition root: connecting, migrating, binding, serving and stopping, what
//! `collector serve` does, reusable by tests and the `platform` command. The application is the
//! HTTP server and, beside it, the ingest writers and the watcher's loop.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::auth::TokenKeys;
use crate::config::{HttpConfig, ServeConfig};
use crate::http::{self, AppState};
use crate::ingest::Ingest;
use crate::store::{Retention, Store};
use crate::watch::{self, Alerts, WatchRules, Watcher};

/// How long `serve` keeps retrying migrations while the database is unreachable.
const MIGRATE_PATIENCE: Duration = Duration::from_secs(60);

/// A bound, not yet serving, collector. Binding port 0 gives a free port (tests use it).
pub struct Application {
    listener: TcpListener,
    store: Store,
    router: Router,
    header_read_timeout: Duration,
    ingest: Ingest,
    overdue: tokio::task::JoinHandle<()>,
}

/// What an application serves: its store, the keys its tokens are checked with, and how many
/// write transactions its ingest runs at once.
pub struct Services {
    pub store: Store,
    pub tokens: TokenKeys,
    /// `DATABASE_WRITERS` (PostgreSQL; SQLite has one).
    pub writers: usize,
    /// What the watcher opens incidents on.
    pub watch: WatchRules,
    /// Where incidents are sent (`ALERTS_FILE`).
    pub alerts: Option<Alerts>,
    /// How long raw rows are kept.
    pub retention: Retention,
}

impl Application {
    /// What `collector serve` and `platform` start: the store `config` names, connected and
    /// migrated (waiting for a database that is still starting), then bound.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        let ServeConfig {
            database,
            secret_key,
            addr,
            http,
            watch,
            alerts,
            retention,
        } = config;
        let store = Store::connect_lazy(database.url(), database.pool())
            .context("DATABASE_URL is invalid")?;
        migrate_when_reachable(&store).await?;
        let services = Services {
            store,
            tokens: TokenKeys::new(&secret_key),
            writers: database.writers(),
            watch,
            alerts,
            retention,
        };
        Self::bind(addr, services, &http).await
    }

    /// Binds `addr` and starts the ingest service; serving starts with [`Application::run_until`].
    pub async fn bind(
        addr: SocketAddr,
        services: Services,
        http: &HttpConfig,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let Services {
            store,
            tokens,
            writers,
            watch,
            alerts,
            retention,
        } = services;
        let ingest = Ingest::start(store.clone(), writers);
        let overdue = tokio::spawn(watch::run(
            Watcher::new(store.clone(), watch),
            alerts,
            retention,
        ));
        let state = AppState::new(store.clone(), ingest.clone(), tokens);
        Ok(Self {
            listener,
            store,
            router: http::router(state, http),
            header_read_timeout: http.header_read_timeout,
            ingest,
            overdue,
        })
    }

    /// The store it serves (to close once it has stopped).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The ingest service, to subscribe to the runs it stores.
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
    /// and waits for the ingest writers to store what they hold.
    ///
    /// hyper is driven directly rather than through `axum::serve`, which sets no timer and so
    /// no header read timeout: a client trickling its request head would hold a connection
    /// forever.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let connections = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        // Out of file descriptors and the like: wait, do not stop serving.
                        tracing::warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Every answer is written as soon as it is ready: with Nagle's algorithm on, a
            // write behind an unacknowledged one waits for the peer's delayed ACK (40 ms on
            // Linux).
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "TCP_NODELAY could not be set");
            }
            let service = TowerToHyperService::new(self.router.clone());
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = connections.watch(connection);
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
            });
        }
        let Self {
            listener,
            router,
            ingest,
            overdue,
            ..
        } = self;
        drop(listener);
        // Between two passes, or in one: its transaction rolls back, the next process redoes it.
        overdue.abort();
        connections.shutdown().await;
        // The router held the last other handles on the ingest service.
        drop(router);
        ingest.stopped().await;
        Ok(())
    }
}

/// Applies migrations, waiting for a database that is still starting (a fresh container).
pub async fn migrate_when_reachable(store: &Store) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + MIGRATE_PATIENCE;
    let mut delay = Duration::from_millis(250);
    loop {
        match store.migrate().await {
            Ok(()) => return Ok(()),
            Err(err) if err.is_unavailable() && tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %err, retry_in = ?delay, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err).context("applying database migrations"),
        }
    }
}
