//! A blocking PostgreSQL connection in which every wait is bounded and can be interrupted.
//!
//! `tokio-postgres` runs on a current-thread runtime owned by the connection, the way the
//! `postgres` crate does it, but each call here waits at most the target's `io_timeout` (the
//! whole connection start at most `connect_timeout`) and asks [`crate::interrupt`]
//! about ten times a second whether to stop. A call that timed out, was interrupted or lost the
//! connection leaves the connection *broken*: its protocol state is unknown, so it is never used
//! again (the pool drops it).

use super::config::{self, Target};
use crate::error::{Error, Result};
use crate::interrupt;
use futures_util::Stream;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Notification, Row, Statement};

/// How often a wait asks whether to stop.
const TICK: Duration = Duration::from_millis(100);

/// An owned statement parameter (for [`PgClient::pipeline`]).
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

type Messages = Pin<Box<dyn Stream<Item = std::result::Result<AsyncMessage, tokio_postgres::Error>> + Send>>;

/// How a bounded wait ended.
enum Waited<T> {
    Done(T),
    TimedOut,
    Interrupted,
    /// The connection ended or failed while the call was pending.
    Lost(Option<tokio_postgres::Error>),
}

/// One connection to the server.
pub(crate) struct PgClient {
    rt: Runtime,
    client: tokio_postgres::Client,
    messages: Messages,
    notifications: VecDeque<Notification>,
    io_timeout: Duration,
    location: String,
    broken: bool,
    /// A `COPY ... FROM STDIN (FORMAT binary)` in progress ([`copy_row`](Self::copy_row)):
    /// until it is finished, nothing else may be sent.
    copy: Option<Pin<Box<BinaryCopyInWriter>>>,
}

/// The server found its own storage corrupt (SQLSTATE class XX: a page failed its checksum, an
/// index is corrupt): outcore's `CorruptMeta`, not a driver failure.
fn corruption(op: &'static str, e: &tokio_postgres::Error) -> Option<Error> {
    let db = e.as_db_error()?;
    let code = db.code();
    (*code == tokio_postgres::error::SqlState::DATA_CORRUPTED
        || *code == tokio_postgres::error::SqlState::INDEX_CORRUPTED)
        .then(|| Error::CorruptMeta {
            what: format!("the PostgreSQL server's storage (during {op})"),
            detail: format!("{} (SQLSTATE {})", db.message(), code.code()),
        })
}

/// Errors of the driver, named by operation.
fn backend(op: &'static str, e: tokio_postgres::Error) -> Error {
    Error::Backend { backend: "postgresql", op, source: Box::new(e) }
}

impl PgClient {
    /// Connect to `target`, the whole start (socket, TLS, authentication) bounded by its
    /// connect timeout.
    pub fn connect(target: &Target) -> Result<PgClient> {
        let location = target.location.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::Io {
            op: "start the PostgreSQL client runtime",
            path: location.clone(),
            source: e,
        })?;
        let limit = target.connect_timeout;
        let waited = rt.block_on(bounded(limit, target.config.connect(target.connector.clone()), None, false));
        let unreachable = |reason: String| Error::Unreachable { location: location.clone(), reason };
        let (client, connection) = match waited {
            Waited::Done(Ok(pair)) => pair,
            Waited::Done(Err(e)) => return Err(target.connect_error(&e)),
            Waited::TimedOut => {
                return Err(unreachable(format!(
                    "no complete connection start within {} s (connect_timeout)",
                    limit.as_secs_f64()
                )))
            }
            Waited::Interrupted => return Err(Error::Interrupted { location, op: "connect" }),
            Waited::Lost(e) => return Err(unreachable(format!("connection lost while starting: {e:?}"))),
        };
        let mut connection = connection;
        let messages: Messages = Box::pin(futures_util::stream::poll_fn(move |cx| connection.poll_message(cx)));
        Ok(PgClient {
            rt,
            client,
            messages,
            notifications: VecDeque::new(),
            io_timeout: target.io_timeout,
            location,
            broken: false,
            copy: None,
        })
    }

    /// True when the connection must not be used again.
    pub fn is_broken(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// Wait for the call `make` starts, driving the connection meanwhile, at most `limit`.
    /// With `until_notified`, the wait also ends (as a timeout) once a notification is in.
    fn wait<'c, T, F>(
        &'c mut self,
        op: &'static str,
        limit: Duration,
        until_notified: bool,
        make: impl FnOnce(&'c tokio_postgres::Client) -> F,
    ) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>> + 'c,
    {
        let PgClient { rt, client, messages, notifications, location, broken, copy, .. } = self;
        if *broken {
            return Err(Error::Unreachable {
                location: location.clone(),
                reason: format!("{op} on a connection that an earlier failure left unusable"),
            });
        }
        if copy.is_some() {
            return Err(Error::Invalid(format!("{op} while a COPY is in progress on the connection")));
        }
        let client: &'c tokio_postgres::Client = client;
        let waited = rt.block_on(bounded(limit, make(client), Some((messages, notifications)), until_notified));
        let location = location.clone();
        let out = match waited {
            Waited::Done(Ok(v)) => return Ok(v),
            Waited::Done(Err(e)) => {
                if let Some(corrupt) = corruption(op, &e) {
                    return Err(corrupt);
                }
                let lost = config::transient(&e);
                let err = backend(op, e);
                if !lost {
                    return Err(err);
                }
                err
            }
            Waited::TimedOut => Error::Unreachable {
                location,
                reason: format!("no reply to {op} within {} s (io_timeout)", limit.as_secs_f64()),
            },
            Waited::Interrupted => Error::Interrupted { location, op },
            Waited::Lost(Some(e)) => backend(op, e),
            Waited::Lost(None) => {
                Error::Unreachable { location, reason: format!("the server closed the connection during {op}") }
            }
        };
        *broken = true;
        Err(out)
    }

    /// The bound of every wait after the connection start.
    pub fn io_timeout(&self) -> Duration {
        self.io_timeout
    }

    /// Change the bound of the waits that follow.
    pub fn set_io_timeout(&mut self, t: Duration) {
        self.io_timeout = t;
    }

    /// Prepare `sql`.
    pub fn prepare(&mut self, op: &'static str, sql: &str) -> Result<Statement> {
        let limit = self.io_timeout;
        self.wait(op, limit, false, |c| c.prepare(sql))
    }

    /// Run a prepared statement and collect its rows.
    pub fn query(&mut self, op: &'static str, st: &Statement, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let limit = self.io_timeout;
        self.wait(op, limit, false, |c| c.query(st, params))
    }

    /// Run prepared statements with owned parameters, then `queries`, as one pipeline: all
    /// are sent before the first reply is read (one round trip). The first failure in statement
    /// order is returned; else the rows of each query.
    pub fn pipeline(
        &mut self,
        op: &'static str,
        items: &[(Statement, Vec<Param>)],
        queries: &[(Statement, Vec<Param>)],
    ) -> Result<Vec<Vec<Row>>> {
        let limit = self.io_timeout;
        let (item_refs, query_refs) = (param_refs(items), param_refs(queries));
        self.wait(op, limit, false, |c| {
            let writes: Vec<_> = items.iter().zip(&item_refs).map(|((st, _), ps)| c.execute(st, ps)).collect();
            let reads: Vec<_> = queries.iter().zip(&query_refs).map(|((st, _), ps)| c.query(st, ps)).collect();
            async move {
                let (done, rows) = futures_util::future::join(
                    futures_util::future::join_all(writes),
                    futures_util::future::join_all(reads),
                )
                .await;
                for r in done {
                    r?;
                }
                rows.into_iter().collect()
            }
        })
    }

    /// Run prepared statements with owned parameters as one pipeline, in order; the rows of
    /// each (or the first failure in statement order).
    pub fn pipeline_all(&mut self, op: &'static str, stmts: &[(Statement, Vec<Param>)]) -> Result<Vec<Vec<Row>>> {
        let limit = self.io_timeout;
        let refs = param_refs(stmts);
        self.wait(op, limit, false, |c| {
            let all: Vec<_> = stmts.iter().zip(&refs).map(|((st, _), ps)| c.query(st, ps)).collect();
            async move { futures_util::future::join_all(all).await.into_iter().collect() }
        })
    }

    /// Run prepared statements with owned parameters, then the query `st`, as one pipeline;
    /// the query's rows (or the first failure in statement order).
    pub fn pipeline_then(
        &mut self,
        op: &'static str,
        items: &[(Statement, Vec<Param>)],
        st: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let limit = self.io_timeout;
        let item_refs = param_refs(items);
        self.wait(op, limit, false, |c| {
            let writes: Vec<_> = items.iter().zip(&item_refs).map(|((st, _), ps)| c.execute(st, ps)).collect();
            let read = c.query(st, params);
            async move {
                let (done, rows) = futures_util::future::join(futures_util::future::join_all(writes), read).await;
                for r in done {
                    r?;
                }
                rows
            }
        })
    }

    /// `COPY ... FROM STDIN (FORMAT binary)` of `rows`, whose columns have `types`; the number
    /// of rows copied.
    pub fn copy_in(&mut self, op: &'static str, sql: &str, types: &[Type], rows: &[Vec<Param>]) -> Result<u64> {
        let limit = self.io_timeout;
        self.wait(op, limit, false, |c| async move {
            let sink = c.copy_in(sql).await?;
            let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
            for row in rows {
                let refs: Vec<&(dyn ToSql + Sync)> = row.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
                writer.as_mut().write(&refs).await?;
            }
            writer.finish().await
        })
    }

    /// Send `row` (columns of `types`) into the `COPY ... FROM STDIN (FORMAT binary)` `sql`,
    /// starting it if none is in progress. The row goes out as the socket takes it: the server
    /// works on the rows sent while the caller makes the next ones. Until
    /// [`copy_finish`](Self::copy_finish), nothing else may be sent on the connection.
    pub fn copy_row(&mut self, op: &'static str, sql: &str, types: &[Type], row: &[&(dyn ToSql + Sync)]) -> Result<()> {
        let limit = self.io_timeout;
        let mut writer = match self.copy.take() {
            Some(w) => w,
            None => Box::pin(BinaryCopyInWriter::new(self.wait(op, limit, false, |c| c.copy_in(sql))?, types)),
        };
        self.wait(op, limit, false, |_| writer.as_mut().write(row))?;
        self.copy = Some(writer);
        Ok(())
    }

    /// End the COPY in progress, if any; the number of rows it copied.
    pub fn copy_finish(&mut self, op: &'static str) -> Result<u64> {
        let Some(writer) = self.copy.take() else { return Ok(0) };
        let limit = self.io_timeout;
        self.wait(op, limit, false, |_| async move {
            let mut writer = writer;
            writer.as_mut().finish().await
        })
    }

    /// Whether a COPY is in progress ([`copy_row`](Self::copy_row)).
    pub fn copying(&self) -> bool {
        self.copy.is_some()
    }

    /// Abandon the COPY in progress, if any (the server discards its rows and fails it).
    pub fn copy_abort(&mut self) {
        self.copy = None;
    }

    /// Run a statement given as text with parameters (prepared each time).
    pub fn query_text(&mut self, op: &'static str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let limit = self.io_timeout;
        self.wait(op, limit, false, |c| c.query(sql, params))
    }

    /// Run statements without parameters (the simple query protocol).
    pub fn batch(&mut self, op: &'static str, sql: &str) -> Result<()> {
        let limit = self.io_timeout;
        self.wait(op, limit, false, |c| c.batch_execute(sql))
    }

    /// Notifications received so far, or else those arriving within `timeout` (none: empty).
    pub fn notifications(&mut self, timeout: Duration) -> Result<Vec<Notification>> {
        if self.notifications.is_empty() && !timeout.is_zero() && !self.broken {
            let PgClient { rt, messages, notifications, .. } = self;
            let never = std::future::pending::<()>();
            let waited = rt.block_on(bounded(timeout, never, Some((messages, notifications)), true));
            let location = self.location.clone();
            let op = "wait for notification";
            let lost = match waited {
                // A timeout here means "nothing came" or "one came".
                Waited::Done(()) | Waited::TimedOut => None,
                Waited::Interrupted => Some(Error::Interrupted { location, op }),
                Waited::Lost(Some(e)) => Some(backend(op, e)),
                Waited::Lost(None) => {
                    Some(Error::Unreachable { location, reason: "the server closed the connection".into() })
                }
            };
            if let Some(e) = lost {
                self.broken = true;
                return Err(e);
            }
        }
        Ok(self.notifications.drain(..).collect())
    }
}

/// The parameters of `list` as the driver takes them.
fn param_refs(list: &[(Statement, Vec<Param>)]) -> Vec<Vec<&(dyn ToSql + Sync)>> {
    list.iter().map(|(_, ps)| ps.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()).collect()
}

/// Poll `fut` (and the connection's messages, if given) until it is done, `limit` passes or an
/// interrupt is requested; with `until_notified`, also until a notification is in (reported as
/// a timeout).
async fn bounded<T>(
    limit: Duration,
    fut: impl Future<Output = T>,
    mut conn: Option<(&mut Messages, &mut VecDeque<Notification>)>,
    until_notified: bool,
) -> Waited<T> {
    let mut fut = pin!(fut);
    let mut deadline = pin!(tokio::time::sleep(limit));
    let mut tick = tokio::time::interval(TICK);
    poll_fn(|cx| {
        if let Some((messages, notifications)) = conn.as_mut() {
            loop {
                match messages.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => notifications.push_back(n),
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Waited::Lost(Some(e))),
                    Poll::Ready(None) => {
                        // Closed: the call can only fail now; let it say how if it is done.
                        return match fut.as_mut().poll(cx) {
                            Poll::Ready(v) => Poll::Ready(Waited::Done(v)),
                            Poll::Pending => Poll::Ready(Waited::Lost(None)),
                        };
                    }
                    Poll::Pending => break,
                }
            }
            if until_notified && !notifications.is_empty() {
                return Poll::Ready(Waited::TimedOut);
            }
        }
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Waited::Done(v));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Waited::TimedOut);
        }
        while tick.poll_tick(cx).is_ready() {
            if interrupt::requested() {
                return Poll::Ready(Waited::Interrupted);
            }
        }
        Poll::Pending
    })
    .await
}
