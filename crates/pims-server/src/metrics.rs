//! Prometheus metrics of one server process, served at `/metrics`. Counters are per replica;
//! Prometheus sums them across replicas.

use std::time::Duration;

use pims_proto::ApiError;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::error::Error;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub enrollments: IntCounter,
    pub pin_failures: IntCounter,
    pub pin_blocks: IntCounter,
    pub sms_sent: IntCounter,
    pub otps_issued: IntCounterVec,
    pub otps_verified: IntCounter,
    /// Security notices sent to trusted numbers, by kind.
    pub notices_sent: IntCounterVec,
    /// Owner restores refused for a wrong code: the code needs no attempt limit, so guessing
    /// shows here rather than in a lockout.
    pub restore_codes_refused: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("pims".into()), None).expect("valid prefix");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let m = Metrics {
            requests,
            latency,
            enrollments: counter(
                "enrollments_total",
                "Enrollments finished (devices created)",
            ),
            pin_failures: counter("pin_failures_total", "Wrong PIN proofs"),
            pin_blocks: counter("pin_blocks_total", "Accounts PIN-blocked"),
            sms_sent: counter("sms_sent_total", "SMS handed to the sender"),
            otps_issued: IntCounterVec::new(
                Opts::new("otps_issued_total", "One-time proofs issued"),
                &["with_pin"],
            )
            .expect("valid metric"),
            otps_verified: counter("otps_verified_total", "OTPs verified by relying parties"),
            restore_codes_refused: counter(
                "restore_codes_refused_total",
                "Owner restores refused for a wrong restore code",
            ),
            notices_sent: IntCounterVec::new(
                Opts::new(
                    "security_notices_sent_total",
                    "Security notices handed to the SMS sender",
                ),
                &["notice"],
            )
            .expect("valid metric"),
            registry,
        };
        for c in [
            &m.enrollments,
            &m.pin_failures,
            &m.pin_blocks,
            &m.sms_sent,
            &m.otps_verified,
            &m.restore_codes_refused,
        ] {
            m.registry.register(Box::new(c.clone())).expect("unique");
        }
        m.registry
            .register(Box::new(m.otps_issued.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.notices_sent.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.requests.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.latency.clone()))
            .expect("unique");
        m
    }

    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        self.requests
            .with_label_values(&[route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts the PIN outcome of a step that checked a PIN proof.
    pub fn pin_outcome<T>(&self, result: &Result<T, Error>) {
        match result {
            Err(Error::Api(ApiError::WrongPin { .. })) => self.pin_failures.inc(),
            Err(Error::Api(ApiError::PinBlocked)) => {
                self.pin_failures.inc();
                self.pin_blocks.inc();
            }
            _ => {}
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
