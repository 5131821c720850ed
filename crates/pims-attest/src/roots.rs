//! The trust anchors, embedded (see `roots/README.md` for where each comes from).

use std::sync::OnceLock;

use crate::x509::{pem_certificates, Cert};

/// Which anchor a chain ended at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AndroidRoot {
    /// Google's hardware attestation root, RSA-4096 (`serialNumber=f92009e853b6b045`); its
    /// renewals keep the key, so every issue of it matches.
    GoogleRsa4096,
    /// Google's EC P-384 "Key Attestation CA1" (2025–2035).
    GoogleKeyAttestationCa1,
    /// The AOSP software attestation roots (EC or RSA): their private keys are published in the
    /// Android source, so a chain ending there proves nothing about hardware.
    AospSoftware,
    /// A root a test trusts with `trust_test_root` (feature `testing` only: nothing a
    /// configuration file says reaches it), treated as a hardware root.
    TestOnly,
}

impl AndroidRoot {
    pub fn as_str(self) -> &'static str {
        match self {
            AndroidRoot::GoogleRsa4096 => "google-rsa-4096",
            AndroidRoot::GoogleKeyAttestationCa1 => "google-key-attestation-ca1",
            AndroidRoot::AospSoftware => "aosp-software",
            AndroidRoot::TestOnly => "test-only",
        }
    }
}

const GOOGLE_RSA_4096: &str = include_str!("../roots/google-hardware-attestation-root-rsa4096.pem");
const GOOGLE_CA1_P384: &str = include_str!("../roots/google-key-attestation-ca1-p384.pem");
const AOSP_SOFTWARE_EC: &str = include_str!("../roots/android-software-attestation-root-ec.pem");
const AOSP_SOFTWARE_RSA: &str = include_str!("../roots/android-software-attestation-root-rsa.pem");
const APPLE_APP_ATTEST_ROOT: &str = include_str!("../roots/apple-app-attestation-root-ca.pem");

fn load(pem: &str) -> Cert {
    let der = pem_certificates(pem).expect("embedded root is PEM");
    Cert::from_der(&der[0]).expect("embedded root parses")
}

struct AndroidAnchors {
    /// (SubjectPublicKeyInfo DER, which root).
    keys: Vec<(Vec<u8>, AndroidRoot)>,
}

fn android_anchors() -> &'static AndroidAnchors {
    static ANCHORS: OnceLock<AndroidAnchors> = OnceLock::new();
    ANCHORS.get_or_init(|| AndroidAnchors {
        keys: vec![
            (load(GOOGLE_RSA_4096).spki_der(), AndroidRoot::GoogleRsa4096),
            (
                load(GOOGLE_CA1_P384).spki_der(),
                AndroidRoot::GoogleKeyAttestationCa1,
            ),
            (load(AOSP_SOFTWARE_EC).spki_der(), AndroidRoot::AospSoftware),
            (
                load(AOSP_SOFTWARE_RSA).spki_der(),
                AndroidRoot::AospSoftware,
            ),
        ],
    })
}

/// The anchor whose public key is this SubjectPublicKeyInfo, if any.
pub(crate) fn android_root_for(spki_der: &[u8]) -> Option<AndroidRoot> {
    let embedded = android_anchors()
        .keys
        .iter()
        .find(|(key, _)| key == spki_der)
        .map(|(_, root)| *root);
    #[cfg(feature = "testing")]
    if embedded.is_none()
        && TEST_ROOTS
            .lock()
            .expect("test roots")
            .iter()
            .any(|key| key == spki_der)
    {
        return Some(AndroidRoot::TestOnly);
    }
    embedded
}

#[cfg(feature = "testing")]
static TEST_ROOTS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Trusts, for the rest of the process, the Android attestation root whose public key is this
/// SubjectPublicKeyInfo (DER), as [`AndroidRoot::TestOnly`]: tests build chains that pass
/// under it. Only with the `testing` feature, which no release build enables.
#[cfg(feature = "testing")]
pub fn trust_test_root(spki_der: &[u8]) {
    let mut roots = TEST_ROOTS.lock().expect("test roots");
    if !roots.iter().any(|key| key == spki_der) {
        roots.push(spki_der.to_vec());
    }
}

/// Apple's App Attestation Root CA (P-384, 2020–2045).
pub(crate) fn apple_app_attest_root() -> &'static Cert {
    static ROOT: OnceLock<Cert> = OnceLock::new();
    ROOT.get_or_init(|| load(APPLE_APP_ATTEST_ROOT))
}

/// The PEM of the embedded roots, for tools that want to show or export them.
pub fn google_hardware_roots_pem() -> [&'static str; 2] {
    [GOOGLE_RSA_4096, GOOGLE_CA1_P384]
}
