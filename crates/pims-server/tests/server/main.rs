//! End-to-end tests of the server over a real socket: each test states one behaviour.

mod abuse_limits;
mod access;
mod access_tokens;
mod admin;
mod attacks;
mod attacks_recovery;
mod attacks_transport;
mod attestation;
mod commands;
mod common;
mod console;
mod console_browser;
mod enrollment;
mod lockout;
mod management;
mod oidc;
mod operations;
mod otp;
mod purge;
mod real_provider;
mod replicas;
mod sms_codes;
mod sms_gateways;
