//! `uniffi-bindgen`: UniFFI's binding generator, in a crate of its own so that building it
//! compiles UniFFI's dependencies only, not the SDK's (it used to be a binary of `pims-ffi`,
//! whose debug build recompiled the whole SDK tree unoptimised when maturin ran it).
//!
//! `uniffi-bindgen generate --library target/release-ffi/libpims_ffi.so --language kotlin
//! --out-dir OUT` (run from the workspace, where it finds `crates/pims-ffi/uniffi.toml`).

fn main() {
    uniffi::uniffi_bindgen_main()
}
