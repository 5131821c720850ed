//! Packs the shared library's relative relocations (RELR): about 250 kB of its 4 MB budget.
//! Needs glibc 2.36+ to load, which every supported Linux has; other targets link as usual.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    }
}
