//! The documented example configuration is valid.

#[test]
fn example_server_configuration_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/server.example.toml");
    let config = pims_server::ServerConfig::from_toml_file(path).unwrap();
    assert_eq!(config.limits.pin_attempts, 5);
    assert_eq!(config.relying_parties[0].id, "remote-commands");
    assert!(!config.dev_issuer);
    // The [http] table documents the defaults.
    let defaults = pims_server::config::HttpLimits::default();
    assert_eq!(
        config.http.header_read_timeout_seconds,
        defaults.header_read_timeout_seconds
    );
    assert_eq!(
        config.http.keep_alive_timeout_seconds,
        defaults.keep_alive_timeout_seconds
    );
    assert_eq!(
        config.http.request_timeout_seconds,
        defaults.request_timeout_seconds
    );
    assert_eq!(config.http.max_body_bytes, defaults.max_body_bytes);
    assert_eq!(config.http.max_connections, defaults.max_connections);
    assert_eq!(
        config.http.max_connections_per_address,
        defaults.max_connections_per_address
    );
    assert_eq!(config.purge_interval_seconds, 300);
    // [attestation]: records without refusing, one Android app, the App Attest app.
    assert_eq!(config.attestation.required_to_enroll, None);
    assert_eq!(config.attestation.android_apps().unwrap().len(), 1);
    assert_eq!(config.attestation.revocation_refresh_seconds, 3600);
    assert_eq!(config.relying_parties[0].required_assurance, None);
}
