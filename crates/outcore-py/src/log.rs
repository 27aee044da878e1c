//! Rust log records to Python's `logging`.
//!
//! The engines log from their own threads (fault handlers, loaders), which must never wait for
//! the GIL: the thread holding it may be blocked in a page fault that only they can serve. So a
//! `tracing` layer formats each record and queues it (bounded; when full, records are dropped and
//! counted), and a daemon thread of the Python package (`outcore._log`) takes them with
//! [`next_log_records`] (which waits with the GIL released) and hands them to
//! `logging.getLogger("outcore.<module>")`.
//!
//! Which records are kept is set by `OUTCORE_LOG` (`tracing_subscriber::EnvFilter` syntax:
//! `debug`, `outcore_pager=debug,warn`, ...; default `warn`). Where the engine can only fail a
//! memory access with SIGBUS, the cause also goes straight to stderr (the process may die first).

use crossbeam_channel::{Receiver, Sender};
use pyo3::prelude::*;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Records waiting for the Python thread.
const QUEUE: usize = 10_000;

/// One record: Python level number, logger name suffix (the Rust module path), message.
type Record = (u8, String, String);

struct Queue {
    tx: Sender<Record>,
    rx: Receiver<Record>,
    dropped: AtomicU64,
}

static QUEUE_: OnceLock<Queue> = OnceLock::new();

fn queue() -> &'static Queue {
    QUEUE_.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        Queue { tx, rx, dropped: AtomicU64::new(0) }
    })
}

/// Python's level numbers.
fn level(l: &tracing::Level) -> u8 {
    match *l {
        tracing::Level::ERROR => 40,
        tracing::Level::WARN => 30,
        tracing::Level::INFO => 20,
        tracing::Level::DEBUG | tracing::Level::TRACE => 10,
    }
}

/// The message and the other fields of an event, as `message (key=value, ...)`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let sep = if self.fields.is_empty() { "" } else { ", " };
            let _ = write!(self.fields, "{sep}{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

struct ToPython;

impl<S: tracing::Subscriber> Layer<S> for ToPython {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let msg = if text.fields.is_empty() { text.message } else { format!("{} ({})", text.message, text.fields) };
        let meta = event.metadata();
        let q = queue();
        if q.tx.try_send((level(meta.level()), meta.target().replace("::", "."), msg)).is_err() {
            q.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Wake a `next_log_records` call waiting in another thread (it returns a level-0 record that
/// means nothing), so the pump thread can stop at interpreter exit before Python would end it
/// inside the extension.
#[pyfunction]
pub(crate) fn wake_log_records() {
    let _ = queue().tx.try_send((0, String::new(), String::new()));
}

/// Install the layer as the process's `tracing` subscriber (once; a no-op if an embedding
/// program installed its own).
pub(crate) fn install() {
    let filter = EnvFilter::try_from_env("OUTCORE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry().with(ToPython.with_filter(filter)).try_init();
}

/// Waits up to `timeout` seconds (GIL released) for log records and returns those queued:
/// `(level, logger suffix, message)`, plus a record saying how many were dropped, if any.
#[pyfunction]
pub(crate) fn next_log_records(py: Python<'_>, timeout: f64) -> Vec<Record> {
    let q = queue();
    let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
    let mut out: Vec<Record> = py.detach(|| q.rx.recv_timeout(wait).ok().into_iter().collect());
    out.extend(q.rx.try_iter().take(QUEUE));
    let dropped = q.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        out.push((30, "outcore".into(), format!("{dropped} log records were dropped (the queue was full)")));
    }
    out
}
