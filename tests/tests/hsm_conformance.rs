//! The sealing conformance suite: one set of cases, run against every backend with the real
//! thing behind it — a SoftHSM2 token, swtpm, the YubiHSM mock in-process and through its
//! HTTP connector, and the soft backend.
//!
//! Each backend provides a [`Fixture`] with two distinct keys (A and B) on the same kind of
//! device; every case in [`cases`] runs once per backend via `conformance!`.

use std::path::{Path, PathBuf};
use std::process::Command;

use keyrack_hsm::{blob, open, BackendKind, HsmConfig, KeyPolicy, SealError, Sealer};
use keyrack_tests::start_yubihsm_mock;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

const PROBE_BIN: &str = env!("CARGO_BIN_EXE_keyrack-seal-probe");

/// Two keys of one backend, and the directory their secret files live in.
struct Fixture {
    a: HsmConfig,
    b: HsmConfig,
    /// A config naming a key that does not exist (None where the backend has no such case).
    missing: Option<(HsmConfig, &'static str)>,
    /// Blobs survive the process (false only for the in-process YubiHSM mock, whose device
    /// lives and dies with the process).
    persistent: bool,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn open(&self, config: &HsmConfig) -> Box<dyn Sealer> {
        open(config, self.dir.path(), KeyPolicy::CreateIfMissing)
            .unwrap_or_else(|e| panic!("open backend: {e}\n({})", keyrack_tests::SETUP_HINT))
    }
}

fn write_secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

fn soft() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let mut c = HsmConfig::new(BackendKind::Soft);
        c.soft = Some(keyrack_hsm::config::SoftConfig {
            passphrase: keyrack_hsm::SecretSource::File(write_secret(dir.path(), name, name)),
            salt: hex::encode(salt),
        });
        c
    };
    let (a, b) = (make("passphrase-a"), make("passphrase-b"));
    Fixture {
        a,
        b,
        missing: None,
        persistent: true,
        dir,
    }
}

fn pkcs11() -> Fixture {
    let with_key = |label: String| {
        let mut c = HsmConfig::new(BackendKind::Pkcs11);
        c.pkcs11 = Some(keyrack_tests::softhsm("keyrack-test", &label));
        c
    };
    Fixture {
        a: with_key(keyrack_tests::unique("conf-a")),
        b: with_key(keyrack_tests::unique("conf-b")),
        missing: Some((
            with_key(keyrack_tests::unique("never-created")),
            "hsm.pkcs11.key_label",
        )),
        persistent: true,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn tpm() -> Fixture {
    let with_handle = |handle: u32| {
        let mut c = HsmConfig::new(BackendKind::Tpm);
        c.tpm = Some(keyrack_tests::swtpm(handle));
        c
    };
    Fixture {
        a: with_handle(0x8100_0100),
        b: with_handle(0x8100_0101),
        // Never created by any test.
        missing: Some((with_handle(0x81FF_FFF0), "hsm.tpm.storage_key_handle")),
        persistent: true,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn yubihsm_with(connector: &str, persistent: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let password = write_secret(dir.path(), "yubihsm.password", "password");
    let with_key = |id: u16| {
        let mut c = HsmConfig::new(BackendKind::Yubihsm);
        c.yubihsm = Some(keyrack_tests::yubihsm(connector, &password, id));
        c
    };
    Fixture {
        a: with_key(0x0100),
        b: with_key(0x0200),
        missing: Some((with_key(0x0300), "hsm.yubihsm.hmac_key_id")),
        persistent,
        dir,
    }
}

fn yubihsm_mock() -> Fixture {
    yubihsm_with("mock", false)
}

fn yubihsm_http() -> Fixture {
    yubihsm_with(&start_yubihsm_mock(), true)
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    OsRng.fill_bytes(&mut v);
    v
}

/// Rebuilds `sealed` with another backend byte and key id; everything else unchanged.
fn relabel(sealed: &[u8], backend: u8, key_id: &str) -> Vec<u8> {
    let old_len = sealed[6] as usize;
    let mut out = sealed[..5].to_vec();
    out.push(backend);
    out.push(key_id.len() as u8);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&sealed[7 + old_len..]);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

mod cases {
    use super::*;

    pub fn round_trip(f: Fixture) {
        let s = f.open(&f.a);
        for len in [0usize, 4096, 65536] {
            let plaintext = random(len);
            let aad = format!("record-{len}");
            let sealed = s.seal(aad.as_bytes(), &plaintext).unwrap();
            let info = blob::inspect(&sealed).unwrap();
            assert_eq!(
                (info.backend, info.key_id.as_str(), info.plaintext_len),
                (s.backend(), s.key_id(), len)
            );
            if len > 0 {
                assert!(
                    !contains(&sealed, &plaintext[..32]),
                    "plaintext visible in the blob"
                );
            }
            let opened = s.unseal(aad.as_bytes(), &sealed).unwrap();
            assert_eq!(&opened[..], &plaintext[..], "round trip of {len} bytes");
        }
        // Two seals of the same plaintext differ (fresh nonce, and per-blob keys where used).
        let x = s.seal(b"r", b"same").unwrap();
        let y = s.seal(b"r", b"same").unwrap();
        assert_ne!(x, y);
    }

    pub fn wrong_aad_fails(f: Fixture) {
        let s = f.open(&f.a);
        let sealed = s
            .seal(b"cluster/c1/node/n0/key/k1/v1", b"share bytes")
            .unwrap();
        for wrong in [
            &b"cluster/c1/node/n0/key/k1/v2"[..],
            b"cluster/c1/node/n1/key/k1/v1",
            b"",
        ] {
            assert!(
                matches!(s.unseal(wrong, &sealed), Err(SealError::Authentication)),
                "opened under {wrong:?}"
            );
        }
        // Nothing lost: the right AAD still opens it.
        assert_eq!(
            &s.unseal(b"cluster/c1/node/n0/key/k1/v1", &sealed).unwrap()[..],
            b"share bytes"
        );
    }

    pub fn any_flipped_byte_fails(f: Fixture) {
        let s = f.open(&f.a);
        let plaintext = random(48);
        let sealed = s.seal(b"rec", &plaintext).unwrap();
        for i in 0..sealed.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = sealed.clone();
                bad[i] ^= mask;
                if let Ok(opened) = s.unseal(b"rec", &bad) {
                    panic!(
                        "blob with byte {i} ^ {mask:#x} opened ({} bytes)",
                        opened.len()
                    );
                }
            }
        }
        assert_eq!(&s.unseal(b"rec", &sealed).unwrap()[..], &plaintext[..]);
    }

    pub fn other_key_fails(f: Fixture) {
        let a = f.open(&f.a);
        let b = f.open(&f.b);
        assert_ne!(a.key_id(), b.key_id());
        let sealed = a.seal(b"rec", b"secret for key A").unwrap();
        match b.unseal(b"rec", &sealed) {
            Err(SealError::WrongKey { blob, sealer }) => {
                assert_eq!((blob.as_str(), sealer.as_str()), (a.key_id(), b.key_id()))
            }
            other => panic!("expected WrongKey, got {other:?}"),
        }
        // Relabelled to claim key B, it still does not open: the key id is bound, not trusted.
        let forged = relabel(&sealed, b.backend() as u8, b.key_id());
        assert!(
            b.unseal(b"rec", &forged).is_err(),
            "blob of key A opened under key B"
        );
        assert_eq!(&a.unseal(b"rec", &sealed).unwrap()[..], b"secret for key A");
    }

    pub fn other_backend_fails(f: Fixture) {
        let s = f.open(&f.a);
        // A blob made by the soft backend (or, for the soft fixture, one relabelled as pkcs11).
        let other = soft();
        let foreign = other.open(&other.a).seal(b"rec", b"x").unwrap();
        let foreign = if s.backend() == keyrack_hsm::BackendId::Soft {
            relabel(&foreign, 1, "pkcs11:t/k")
        } else {
            foreign
        };
        assert!(matches!(
            s.unseal(b"rec", &foreign),
            Err(SealError::WrongBackend { .. })
        ));
        // Forged to name this backend and key, it fails authentication.
        let forged = relabel(&foreign, s.backend() as u8, s.key_id());
        assert!(s.unseal(b"rec", &forged).is_err());
    }

    pub fn opens_in_a_fresh_process(f: Fixture) {
        assert!(f.persistent, "fixture is not persistent");
        let plaintext = random(4096);
        let sealed = {
            let s = f.open(&f.a);
            s.seal(b"persisted-record", &plaintext).unwrap()
            // The sealer (and its TPM connection) closes here, before the child opens one.
        };
        let blob_file = f.dir.path().join("blob");
        std::fs::write(&blob_file, &sealed).unwrap();
        let config_file = f.dir.path().join("hsm.toml");
        std::fs::write(&config_file, toml::to_string(&f.a).unwrap()).unwrap();
        let out = Command::new(PROBE_BIN)
            .arg(&config_file)
            .arg(hex::encode(b"persisted-record"))
            .arg(&blob_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            hex::encode(Sha256::digest(&plaintext))
        );
    }

    pub fn health_reports_ok(f: Fixture) {
        let s = f.open(&f.a);
        let h = s.health();
        assert!(h.is_healthy(), "{h:?}");
        assert_eq!((h.backend, h.key_id.as_str()), (s.backend(), s.key_id()));
    }

    pub fn missing_key_is_not_created_silently(f: Fixture) {
        let Some((config, setting)) = &f.missing else {
            panic!("fixture names no missing key")
        };
        match open(config, f.dir.path(), KeyPolicy::MustExist) {
            Err(e @ SealError::NotFound { .. }) => assert!(e.to_string().contains(setting), "{e}"),
            Err(e) => panic!("expected NotFound, got {e}"),
            Ok(_) => panic!("a missing key was accepted"),
        }
    }
}

macro_rules! conformance {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[test]
                fn $case() {
                    super::cases::$case(super::$backend());
                }
            )*
        }
    };
}

conformance!(soft: round_trip, wrong_aad_fails, any_flipped_byte_fails, other_key_fails,
    other_backend_fails, opens_in_a_fresh_process, health_reports_ok);
conformance!(pkcs11: round_trip, wrong_aad_fails, any_flipped_byte_fails, other_key_fails,
    other_backend_fails, opens_in_a_fresh_process, health_reports_ok, missing_key_is_not_created_silently);
conformance!(tpm: round_trip, wrong_aad_fails, any_flipped_byte_fails, other_key_fails,
    other_backend_fails, opens_in_a_fresh_process, health_reports_ok, missing_key_is_not_created_silently);
conformance!(yubihsm_http: round_trip, wrong_aad_fails, any_flipped_byte_fails, other_key_fails,
    other_backend_fails, opens_in_a_fresh_process, health_reports_ok, missing_key_is_not_created_silently);
// The in-process mock's device lives only as long as the process: no persistence case.
conformance!(yubihsm_mock: round_trip, wrong_aad_fails, any_flipped_byte_fails, other_key_fails,
    other_backend_fails, health_reports_ok, missing_key_is_not_created_silently);
