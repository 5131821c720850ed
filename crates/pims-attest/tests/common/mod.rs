//! Shared by the attestation tests: the vectors under `tests/vectors/`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::Engine;

pub fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// A chain file (PEM, leaf first) as DER certificates.
pub fn chain(relative: &str) -> Vec<Vec<u8>> {
    let path = vectors().join("android-key-attestation").join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    pims_attest::pem_certificates(&text).unwrap()
}

/// Every `DEVICE/sdkNN/NAME.pem` that has a `.json` beside it, as `DEVICE/sdkNN/NAME`.
pub fn android_cases() -> Vec<String> {
    let root = vectors().join("android-key-attestation");
    let mut cases = Vec::new();
    for device in std::fs::read_dir(&root).unwrap() {
        let device = device.unwrap().path();
        if !device.is_dir() {
            continue;
        }
        for sdk in std::fs::read_dir(&device).unwrap() {
            let sdk = sdk.unwrap().path();
            if !sdk.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&sdk).unwrap() {
                let file = file.unwrap().path();
                if file.extension().is_some_and(|e| e == "pem")
                    && file.with_extension("json").exists()
                {
                    let rel = file.strip_prefix(&root).unwrap().with_extension("");
                    cases.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    cases.sort();
    cases
}

pub fn case_json(case: &str) -> serde_json::Value {
    let path = vectors()
        .join("android-key-attestation")
        .join(format!("{case}.json"));
    // Some files open with a `//` comment line (Gson accepts it).
    let text: String = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&text).unwrap()
}

/// One document of the App Attest YAML files: its top-level `key: value` scalars.
#[derive(Debug, Clone)]
pub struct YamlDoc {
    pub file: String,
    pub fields: Vec<(String, String)>,
}

impl YamlDoc {
    pub fn get(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{}: no {key}", self.file))
    }
}

/// The documents of every `apple-app-attest/*.yaml` (enough YAML for these files: `---`
/// separators, unindented `key: scalar` lines; nested blocks are skipped).
pub fn app_attest_docs() -> Vec<YamlDoc> {
    let dir = vectors().join("apple-app-attest");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        for chunk in text.split("\n---") {
            let mut fields = Vec::new();
            for line in chunk.lines() {
                if line.starts_with(' ') || line.starts_with('-') || line.is_empty() {
                    continue;
                }
                if let Some((k, v)) = line.split_once(':') {
                    let v = v.trim().trim_matches('\'').trim_matches('"').to_string();
                    fields.push((k.trim().to_string(), v));
                }
            }
            if !fields.is_empty() {
                docs.push(YamlDoc {
                    file: name.clone(),
                    fields,
                });
            }
        }
    }
    docs
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` as a time.
pub fn rfc3339(text: &str) -> std::time::SystemTime {
    let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<u64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe - 719_468) as u64;
    let millis: u64 = format!("{frac:0<3}")[..3].parse().unwrap();
    std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(
            ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000) + millis,
        )
}
