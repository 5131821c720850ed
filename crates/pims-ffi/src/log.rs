//! A log sink the app provides: the SDK's `tracing` events, already free of secrets, forwarded
//! as one line each.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, uniffi::Enum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[uniffi::export(with_foreign)]
pub trait LogSink: Send + Sync {
    /// `target` names the SDK module; `message` is the event and its fields on one line.
    fn log(&self, level: LogLevel, target: String, message: String);
}

struct Installed {
    sink: Arc<dyn LogSink>,
    max_level: LogLevel,
}

static SINK: OnceLock<RwLock<Option<Installed>>> = OnceLock::new();

/// Sends the SDK's log events at `max_level` or more severe to `sink`, replacing any previous
/// sink; `None` stops forwarding. The process-wide `tracing` subscriber is installed on first
/// use unless the process already has one.
#[uniffi::export]
pub fn set_log_sink(sink: Option<Arc<dyn LogSink>>, max_level: LogLevel) {
    let slot = SINK.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(ForwardLayer);
        let _ = tracing::subscriber::set_global_default(subscriber);
        RwLock::new(None)
    });
    let installed = sink.map(|sink| Installed { sink, max_level });
    *slot.write().unwrap_or_else(|e| e.into_inner()) = installed;
}

struct ForwardLayer;

impl<S: Subscriber> Layer<S> for ForwardLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(slot) = SINK.get() else { return };
        let guard = slot.read().unwrap_or_else(|e| e.into_inner());
        let Some(installed) = guard.as_ref() else {
            return;
        };
        let level = level_of(event.metadata().level());
        if level > installed.max_level {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        let sink = installed.sink.clone();
        let target = event.metadata().target().to_owned();
        // A sink that throws must not turn the SDK call it was logging into a failure.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sink.log(level, target, line.0)
        }));
    }
}

fn level_of(level: &tracing::Level) -> LogLevel {
    match *level {
        tracing::Level::ERROR => LogLevel::Error,
        tracing::Level::WARN => LogLevel::Warn,
        tracing::Level::INFO => LogLevel::Info,
        tracing::Level::DEBUG => LogLevel::Debug,
        tracing::Level::TRACE => LogLevel::Trace,
    }
}

/// `message key=value …`, the way `tracing`'s own formatter prints an event.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            self.0.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}
