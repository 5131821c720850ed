//! Hardware key attestation and app attestation, verified offline as the platform owners do.
//!
//! - **Android Key Attestation** ([`verify_android`]): the certificate chain a phone returns for
//!   a Keystore key made with an attestation challenge. The rules are those of Google's own
//!   verifier (`android/keyattestation`), not a generic X.509 validator's: the root is matched by
//!   public key (Google's RSA-4096 root and the 2025 P-384 "Key Attestation CA1", embedded);
//!   names chain and every signature verifies; the intermediates are checked at one time (the
//!   enrollment, or the key's creation time) and factory intermediates that have expired are
//!   tolerated, because they cannot be rotated (remotely provisioned ones are not); key usage
//!   bits are not required (factory chains exist whose intermediates lack `keyCertSign`); the
//!   leaf's own validity is ignored (the phone sets it); only the leaf may carry the attestation
//!   extension and the chain may not go on below it; no serial may be on the revocation list.
//!   Then [`AndroidExpectations`] applies the relying party's policy: challenge, key, security
//!   level, root of trust, patch level, application id, user authentication.
//! - **Apple App Attest** ([`verify_app_attest`], [`verify_app_attest_assertion`]): Apple's
//!   validation steps for the attestation object and the assertions after it.
//!
//! The result is an [`Assurance`] level with the parsed facts, or an [`AttestationFault`] naming
//! the first [`Rule`] that failed. The crate does no I/O: the caller passes the chain, the
//! revocation list's bytes and the time.
//!
//! # Use
//!
//! ```no_run
//! use std::time::SystemTime;
//! use pims_attest::{verify_android, AndroidApp, AndroidExpectations, Assurance, RevocationList};
//! # let (chain_der, status_json, challenge): (Vec<Vec<u8>>, Vec<u8>, Vec<u8>) = Default::default();
//! // Google's status list, fetched by the caller (this crate does no I/O).
//! let revoked = RevocationList::from_json(&status_json).expect("Google's format");
//! let policy = AndroidExpectations::strict(
//!     challenge, // what the server gave this enrollment
//!     vec![AndroidApp {
//!         package_name: "com.example.car".into(),
//!         signature_digests: vec![vec![0; 32]], // the app's signing certificate SHA-256
//!     }],
//! );
//! let assurance = match verify_android(&chain_der, &policy, &revoked, Some(SystemTime::now())) {
//!     Ok(verdict) => verdict.assurance, // strongbox or tee under this policy
//!     Err(fault) => {
//!         eprintln!("{fault}"); // "<rule>: <why>", e.g. "challenge: attested challenge …"
//!         Assurance::Unattested
//!     }
//! };
//! # let _ = assurance;
//! ```
//!
//! # Dependencies, and why each
//!
//! - `x509-cert` and `der` (RustCrypto formats): X.509 and DER parsing. Pure Rust, strict DER,
//!   maintained alongside the RustCrypto signature crates; `der` 0.8 reads the multi-byte
//!   context tags (`[704]`, `[709]`, …) of Android's `KeyDescription`, so the extension is read
//!   with it rather than by hand.
//! - `ring`: signature verification (ECDSA P-256/P-384 with SHA-256/384, RSA PKCS#1 v1.5). It
//!   covers every algorithm pair in real attestation chains in one audited, constant-time crate
//!   that the workspace already builds (for RSA it has the 1024-bit "legacy" verifier that the
//!   AOSP software root needs, used for that root only), where RustCrypto would add `p384` and
//!   `rsa` (the latter with an open timing advisory, irrelevant to verification but flagged).
//! - `sha2`: SHA-256 for App Attest nonces, key ids and RP id hashes (already in the workspace).
//! - `ciborium`: CBOR decoding of App Attest objects (maintained, serde-compatible, already in
//!   the lock file through other crates).
//! - `serde`/`serde_json`: Google's JSON revocation status list.
//! - `base64`: PEM bodies.

mod android;
mod apple;
mod fault;
mod key_description;
mod revocation;
mod roots;
#[cfg(feature = "testing")]
pub mod testing;
mod x509;

pub use android::{
    verify_android, verify_android_chain, AndroidApp, AndroidExpectations, AndroidVerdict,
    AttestedChain, BootPolicy, Provisioning, KEY_ATTESTATION_OID,
};
pub use apple::{
    verify_app_attest, verify_app_attest_assertion, AppAttestAssertion,
    AppAttestAssertionExpectations, AppAttestEnvironment, AppAttestExpectations, AppAttestVerdict,
    APPLE_NONCE_OID,
};
pub use fault::{AttestationFault, Rule};
pub use key_description::{
    AttestationApplicationId, AuthorizationList, KeyDescription, Origin, PackageInfo, RootOfTrust,
    SecurityLevel, VerifiedBootState,
};
pub use revocation::{RevocationEntry, RevocationList};
#[cfg(feature = "testing")]
pub use roots::trust_test_root;
pub use roots::{google_hardware_roots_pem, AndroidRoot};
pub use x509::{pem_certificates, KeyAlgorithm};

use std::fmt;
use std::str::FromStr;

/// What an enrollment proved about the device key. The string forms are stable (stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Assurance {
    /// Android StrongBox: a separate secure element.
    StrongBox,
    /// Android TEE (TrustZone).
    Tee,
    /// Apple Secure Enclave, via App Attest.
    SecureEnclave,
    /// Attested, but by software (a software security level, or a software root): no hardware
    /// protection is proven.
    Software,
    /// No attestation was sent, or it failed verification.
    Unattested,
}

impl Assurance {
    /// `strongbox`, `tee`, `secure-enclave`, `software` or `unattested`.
    pub fn as_str(self) -> &'static str {
        match self {
            Assurance::StrongBox => "strongbox",
            Assurance::Tee => "tee",
            Assurance::SecureEnclave => "secure-enclave",
            Assurance::Software => "software",
            Assurance::Unattested => "unattested",
        }
    }

    /// An order for "at least" policies: unattested 0, software 1, TEE 2, Secure Enclave and
    /// StrongBox 3 (both dedicated secure processors).
    pub fn rank(self) -> u8 {
        match self {
            Assurance::Unattested => 0,
            Assurance::Software => 1,
            Assurance::Tee => 2,
            Assurance::SecureEnclave | Assurance::StrongBox => 3,
        }
    }

    /// Whether this level satisfies a policy that requires `required`.
    pub fn meets(self, required: Assurance) -> bool {
        self.rank() >= required.rank()
    }
}

impl fmt::Display for Assurance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stored and sent as its string form (`"tee"`).
impl serde::Serialize for Assurance {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Assurance {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Assurance {
    type Err = String;

    fn from_str(s: &str) -> Result<Assurance, String> {
        Ok(match s {
            "strongbox" => Assurance::StrongBox,
            "tee" => Assurance::Tee,
            "secure-enclave" => Assurance::SecureEnclave,
            "software" => Assurance::Software,
            "unattested" => Assurance::Unattested,
            other => return Err(format!("unknown assurance level {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assurance_strings_are_stable_and_round_trip() {
        let all = [
            Assurance::StrongBox,
            Assurance::Tee,
            Assurance::SecureEnclave,
            Assurance::Software,
            Assurance::Unattested,
        ];
        let names: Vec<&str> = all.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names,
            [
                "strongbox",
                "tee",
                "secure-enclave",
                "software",
                "unattested"
            ]
        );
        for a in all {
            assert_eq!(a.to_string().parse::<Assurance>(), Ok(a));
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{a}\""));
            assert_eq!(serde_json::from_str::<Assurance>(&json).unwrap(), a);
        }
        assert!("hardware".parse::<Assurance>().is_err());
        assert!(Assurance::StrongBox.meets(Assurance::Tee));
        assert!(Assurance::SecureEnclave.meets(Assurance::Tee));
        assert!(!Assurance::Software.meets(Assurance::Tee));
        assert!(!Assurance::Unattested.meets(Assurance::Software));
    }
}
