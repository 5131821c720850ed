//! Events of the `pims.authentication.enrollment` subscription.

use pims_core::EventSink;
use serde_json::json;

/// Subscription state: the last delivered view of this device and account, and where to send
/// changes. Every change is compared and sent under one lock, so each is delivered once.
#[derive(Default)]
pub(super) struct Events {
    inner: std::sync::Mutex<EventsState>,
}

#[derive(Default)]
struct EventsState {
    sink: Option<EventSink>,
    activated: Option<bool>,
    /// `None` until the server has answered once.
    blocked: Option<bool>,
}

impl Events {
    pub(super) fn start(&self, sink: EventSink, activated: bool, blocked: Option<bool>) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.sink = Some(sink);
        inner.activated = Some(activated);
        inner.blocked = blocked;
    }

    pub(super) fn stop(&self) {
        self.inner.lock().expect("not poisoned").sink = None;
    }

    pub(super) fn last_blocked(&self) -> Option<bool> {
        self.inner.lock().expect("not poisoned").blocked
    }

    /// Records what a call or a poll learned (`None`: nothing about that part) and delivers one
    /// event per change.
    pub(super) fn observe(&self, activated: Option<bool>, blocked: Option<bool>) {
        let mut inner = self.inner.lock().expect("not poisoned");
        let mut changes = Vec::new();
        if let Some(now) = activated {
            if inner.activated.is_some_and(|before| before != now) {
                changes.push(if now {
                    "deviceActivated"
                } else {
                    "deviceDeactivated"
                });
            }
            inner.activated = Some(now);
        }
        if let Some(now) = blocked {
            if inner.blocked.is_some_and(|before| before != now) {
                changes.push(if now {
                    "accountBlocked"
                } else {
                    "accountUnblocked"
                });
            }
            inner.blocked = Some(now);
        }
        let Some(sink) = inner.sink.clone() else {
            return;
        };
        if !sink.is_active() {
            inner.sink = None;
            return;
        }
        for event in changes {
            sink.send(Ok(json!({
                "event": event,
                "isDeviceActivated": inner.activated.unwrap_or(false),
                "isAccountBlocked": match inner.blocked {
                    Some(true) => "PinBlocked",
                    Some(false) => "NotBlocked",
                    None => "Unknown",
                },
            })));
        }
    }
}
