//! The documented example configuration is valid.

#[test]
fn example_server_configuration_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/server.example.toml");
    let config = pims_server::ServerConfig::from_toml_file(path).unwrap();
    assert_eq!(config.limits.pin_attempts, 5);
    assert_eq!(config.relying_parties[0].id, "remote-commands");
    assert!(!config.dev_issuer);
    assert_eq!(config.purge_interval_seconds, 300);
}
