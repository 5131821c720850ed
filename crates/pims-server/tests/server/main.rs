//! End-to-end tests of the server over a real socket: each test states one behaviour.

mod access;
mod common;
mod enrollment;
mod lockout;
mod management;
mod otp;
mod sms_codes;
