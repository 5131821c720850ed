//! Test-only (feature `testing`): Android Key Attestation chains that pass, under a root this
//! process trusts ([`crate::trust_test_root`]), for tests of the code that enrolls with them
//! (the server's, the SDK's). No release build enables the feature, and nothing a configuration
//! file says reaches it.

use der::{Decode, Encode};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, PublicKeyData, SerialNumber, SignatureAlgorithm,
};

use crate::x509::Cert;
use crate::KEY_ATTESTATION_OID;

/// The serial of every [`TestCa`]'s intermediate, in the revocation list's form.
pub const TEST_INTERMEDIATE_SERIAL: &str = "5e71a1";

/// A genuine phone's attestation (a Pixel 9 Pro, `caiman/sdk36/TEE_EC_RKP`: TEE, locked,
/// verified boot, a P-256 signing key generated in the TEE), whose extension the test leaves
/// carry with their own challenge.
const GENUINE: &str =
    include_str!("../tests/vectors/android-key-attestation/caiman/sdk36/TEE_EC_RKP.pem");

/// A certificate authority trusted as an Android attestation root in this process, with one
/// intermediate (serial [`TEST_INTERMEDIATE_SERIAL`]).
pub struct TestCa {
    root: Vec<u8>,
    intermediate: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

impl TestCa {
    /// A new root, trusted from now on in this process, and its intermediate.
    pub fn new() -> TestCa {
        let root_key = KeyPair::generate().expect("P-256 key");
        let root_params = ca_params("PIMS test attestation root");
        let root = root_params.self_signed(&root_key).expect("root");
        let root = root.der().to_vec();
        crate::trust_test_root(&Cert::from_der(&root).expect("root parses").spki_der());
        let inter_key = KeyPair::generate().expect("P-256 key");
        let mut inter_params = ca_params("PIMS test attestation key");
        inter_params.serial_number = Some(SerialNumber::from(vec![0x5e, 0x71, 0xa1]));
        let intermediate = inter_params
            .signed_by(&inter_key, &Issuer::from_params(&root_params, &root_key))
            .expect("intermediate")
            .der()
            .to_vec();
        TestCa {
            root,
            intermediate,
            issuer: Issuer::new(inter_params, inter_key),
        }
    }

    /// Leaf, intermediate and root (DER): the P-256 key `public_key` (its uncompressed point,
    /// as PIMS devices send it) certified with the genuine phone's attestation, `challenge`
    /// in place of its own.
    pub fn chain(&self, public_key: &[u8], challenge: &[u8]) -> Vec<Vec<u8>> {
        let genuine = crate::pem_certificates(GENUINE).expect("genuine chain");
        let leaf = Cert::from_der(&genuine[0]).expect("genuine leaf");
        let extension = leaf
            .extension(&KEY_ATTESTATION_OID)
            .expect("attestation extension");
        // KeyDescription is a SEQUENCE whose fifth field is the attestation challenge.
        let mut fields: Vec<der::Any> = Vec::from_der(extension).expect("KeyDescription");
        fields[4] =
            der::Any::new(der::Tag::OctetString, challenge.to_vec()).expect("an OCTET STRING");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Android Keystore Key");
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17],
                fields.to_der().expect("KeyDescription encodes"),
            ));
        let leaf = params
            .signed_by(&DeviceKey(public_key.to_vec()), &self.issuer)
            .expect("leaf")
            .der()
            .to_vec();
        vec![leaf, self.intermediate.clone(), self.root.clone()]
    }
}

/// A device's public key (the point), which rcgen certifies without its private half.
struct DeviceKey(Vec<u8>);

impl PublicKeyData for DeviceKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}
