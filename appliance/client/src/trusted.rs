//! The keys an operator trusts: each key's public key and chain code, recorded on this
//! side from evidence the operator can check, so that an approver never takes a key from
//! the node it is looking at.
//!
//! A trusted-keys file (`trusted-keys.toml` beside client.toml, or client.toml's
//! `trusted_keys`) holds one entry per (key id, scheme). `keyrack client keygen` records the
//! keys every node reported; `keyrack client trust` records them from the nodes' signed
//! `status` answers when they agree ([`agree`]). The console (`keyrack tui
//! --approver-config`) decodes a sign request's payload with the trusted key and refuses a
//! node that lists another.
//!
//! What it owns: the file format (versioned, unknown fields refused, written atomically with
//! mode 0600), the lookups, the rule that an entry is never silently replaced by another
//! public key, and the agreement rule for status answers. It never talks to a node.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::request::is_valid_key_id;
use crate::result::{KeyInfo, KeyStatus};
use crate::scheme::Scheme;
use crate::wire;

/// The file format this build reads and writes.
pub const FORMAT: u32 = 1;

/// The file's name when client.toml does not name one: `trusted-keys.toml` in the directory
/// of client.toml.
pub const DEFAULT_FILE: &str = "trusted-keys.toml";

/// Where a trusted key was learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustSource {
    /// A keygen this client sent: every node of the manifest reported the same key.
    Keygen,
    /// `keyrack client trust`: the signed status answers of at least a threshold of the
    /// key's committee agreed.
    Status,
}

impl TrustSource {
    /// The file's form: `keygen` or `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustSource::Keygen => "keygen",
            TrustSource::Status => "status",
        }
    }
}

/// One trusted key: a key id's key of one scheme, with the committee it had when it was
/// recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    /// The key (wallet) id.
    pub key_id: String,
    /// The scheme.
    pub scheme: Scheme,
    /// The group public key (hex; length per scheme).
    #[serde(with = "wire::hex_bytes")]
    pub public_key: Vec<u8>,
    /// The chain code child keys are derived with (64 hex).
    #[serde(with = "wire::hex_bytes")]
    pub chain_code: [u8; 32],
    /// The threshold `t` when recorded.
    pub threshold: u16,
    /// The committee (node ids, in key-index order) when recorded.
    pub participants: Vec<String>,
    /// The share version when recorded.
    pub version: u32,
    /// When it was recorded (ms since the Unix epoch).
    pub trusted_at_ms: u64,
    /// How it was learned.
    pub source: TrustSource,
}

impl TrustedKey {
    /// The entry for a key the nodes reported (keygen, or agreeing status answers).
    pub fn from_info(info: &KeyInfo, source: TrustSource, now_ms: u64) -> Self {
        TrustedKey {
            key_id: info.key_id.clone(),
            scheme: info.scheme,
            public_key: info.public_key.clone(),
            chain_code: info.chain_code,
            threshold: info.threshold,
            participants: info.participants.clone(),
            version: info.version,
            trusted_at_ms: now_ms,
            source,
        }
    }

    /// Whether `other` is the same key: public key and chain code.
    pub fn same_key(&self, other: &TrustedKey) -> bool {
        self.public_key == other.public_key && self.chain_code == other.chain_code
    }

    /// Whether `other` has the same key, committee, threshold and version.
    fn same_facts(&self, other: &TrustedKey) -> bool {
        self.same_key(other)
            && self.threshold == other.threshold
            && self.participants == other.participants
            && self.version == other.version
    }

    fn check(&self) -> Result<(), String> {
        let what = format!("key {} ({})", self.key_id, self.scheme);
        if !is_valid_key_id(&self.key_id) {
            return Err(format!("invalid key id '{}'", self.key_id));
        }
        if self.public_key.len() != self.scheme.public_key_len() {
            return Err(format!(
                "{what}: public_key is {} bytes, a {} key is {}",
                self.public_key.len(),
                self.scheme,
                self.scheme.public_key_len()
            ));
        }
        let n = self.participants.len();
        if self.threshold == 0 || usize::from(self.threshold) > n {
            return Err(format!(
                "{what}: threshold {} of {n} participants",
                self.threshold
            ));
        }
        for (i, p) in self.participants.iter().enumerate() {
            if self.participants[..i].contains(p) {
                return Err(format!("{what}: participant '{p}' is listed twice"));
            }
        }
        Ok(())
    }
}

/// The first and last 8 hex digits of `bytes` (`02a1633c…be551b5dc`), for messages that
/// name a key.
pub fn short_hex(bytes: &[u8]) -> String {
    let hex = hex::encode(bytes);
    match (
        hex.get(..8),
        hex.len().checked_sub(8).and_then(|i| hex.get(i..)),
    ) {
        (Some(head), Some(tail)) if hex.len() > 20 => format!("{head}…{tail}"),
        _ => hex,
    }
}

/// "PUBLIC_KEY (chain code CHAIN_CODE)", both short.
fn key_text(key: &TrustedKey) -> String {
    format!(
        "{} (chain code {})",
        short_hex(&key.public_key),
        short_hex(&key.chain_code)
    )
}

/// What reading, changing or writing a trusted-keys file can run into.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedKeysError {
    /// The file could not be read or written.
    #[error("trusted keys {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may write the file: whoever can write it decides which keys an
    /// approver trusts.
    #[error(
        "trusted keys {path}: group or others may write it (mode {mode:o}); run chmod 600 {path}"
    )]
    Permissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a trusted-keys file this build reads (TOML, unknown fields, format, values).
    #[error("trusted keys {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An entry for the same key and scheme holds another public key or chain code; it is
    /// replaced only when asked explicitly.
    #[error(
        "key {key_id} ({scheme}) is trusted in {path} with public key {trusted}, but public \
         key {offered} is offered: the key id was deleted and re-created, or a node lies; \
         nothing was recorded"
    )]
    Conflict {
        /// The file.
        path: String,
        /// The key id.
        key_id: String,
        /// The scheme.
        scheme: Scheme,
        /// The trusted public key and chain code (short hex).
        trusted: String,
        /// The public key and chain code offered (short hex).
        offered: String,
    },
}

/// What [`TrustedKeys::record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A new entry.
    Added,
    /// The same key with another committee, threshold or version: the entry now says so.
    Updated,
    /// The same entry was there already.
    Unchanged,
    /// Another key was trusted under this id and scheme; replaced, as asked.
    Replaced,
}

impl Recorded {
    /// `added`, `updated`, `unchanged` or `replaced`.
    pub fn as_str(self) -> &'static str {
        match self {
            Recorded::Added => "added",
            Recorded::Updated => "updated",
            Recorded::Unchanged => "unchanged",
            Recorded::Replaced => "replaced",
        }
    }
}

/// The file as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    format: u32,
    #[serde(default)]
    keys: Vec<TrustedKey>,
}

const HEADER: &str = "\
# keyrack trusted keys: the public keys this operator trusts, one per key id and scheme.
# Written by `keyrack client keygen` and `keyrack client trust KEY_ID`; the console's
# approver decodes payloads with these keys and refuses a node that reports others.
";

/// A trusted-keys file, in memory: its path and entries (one per key id and scheme).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKeys {
    path: PathBuf,
    keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// No trusted keys, to be saved at `path`.
    pub fn empty(path: &Path) -> Self {
        TrustedKeys {
            path: path.to_owned(),
            keys: Vec::new(),
        }
    }

    /// Reads `path`; a file that does not exist is no error (no key is trusted yet).
    pub fn load_or_empty(path: &Path) -> Result<Self, TrustedKeysError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::empty(path)),
            _ => Self::load(path),
        }
    }

    /// Reads `path`; refuses a file group or others may write, unknown fields, another
    /// format, invalid entries and two entries for one key id and scheme.
    pub fn load(path: &Path) -> Result<Self, TrustedKeysError> {
        let shown = path.display().to_string();
        let io = |source| TrustedKeysError::Io {
            path: shown.clone(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o022 != 0 {
                return Err(TrustedKeysError::Permissions {
                    path: shown,
                    mode: mode & 0o777,
                });
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::from_toml(&text, path)
    }

    /// Parses a file's text (`path`: where it came from, for messages and saving).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, TrustedKeysError> {
        let invalid = |message: String| TrustedKeysError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let file: FileV1 = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.format != FORMAT {
            return Err(invalid(format!(
                "format {} is not one this build reads ({FORMAT})",
                file.format
            )));
        }
        for (i, key) in file.keys.iter().enumerate() {
            key.check().map_err(invalid)?;
            if file.keys[..i]
                .iter()
                .any(|k| k.key_id == key.key_id && k.scheme == key.scheme)
            {
                return Err(invalid(format!(
                    "key {} ({}) has two entries; keep one",
                    key.key_id, key.scheme
                )));
            }
        }
        Ok(TrustedKeys {
            path: path.to_owned(),
            keys: file.keys,
        })
    }

    /// The file's text: a comment, `format`, then the entries sorted by key id and scheme.
    pub fn to_toml(&self) -> Result<String, TrustedKeysError> {
        let mut keys = self.keys.clone();
        keys.sort_by(|a, b| (&a.key_id, a.scheme).cmp(&(&b.key_id, b.scheme)));
        let body = toml::to_string(&FileV1 {
            format: FORMAT,
            keys,
        })
        .map_err(|e| TrustedKeysError::Invalid {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(format!("{HEADER}{body}"))
    }

    /// Writes the file atomically (a temp file beside it, mode 0600, synced, then renamed
    /// over it).
    pub fn save(&self) -> Result<(), TrustedKeysError> {
        use std::io::Write as _;
        let shown = self.path.display().to_string();
        let io = |source| TrustedKeysError::Io {
            path: shown.clone(),
            source,
        };
        let text = self.to_toml()?;
        let name = self
            .path
            .file_name()
            .ok_or_else(|| TrustedKeysError::Invalid {
                path: shown.clone(),
                message: "not a file path".into(),
            })?
            .to_string_lossy();
        let tmp = self
            .path
            .with_file_name(format!(".{name}.{}.tmp", wire::random_id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let written = options.open(&tmp).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        });
        let renamed = written.and_then(|()| std::fs::rename(&tmp, &self.path));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        renamed.map_err(io)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// The trusted key of `key_id` for `scheme`, if any.
    pub fn get(&self, key_id: &str, scheme: Scheme) -> Option<&TrustedKey> {
        self.keys
            .iter()
            .find(|k| k.key_id == key_id && k.scheme == scheme)
    }

    /// Records `key` (in memory; [`TrustedKeys::save`] writes it). The same public key and
    /// chain code update the entry's committee, threshold and version; another public key
    /// or chain code under the same key id and scheme is a [`TrustedKeysError::Conflict`]
    /// unless `replace`.
    pub fn record(&mut self, key: TrustedKey, replace: bool) -> Result<Recorded, TrustedKeysError> {
        key.check().map_err(|message| TrustedKeysError::Invalid {
            path: self.path.display().to_string(),
            message,
        })?;
        let Some(old) = self
            .keys
            .iter_mut()
            .find(|k| k.key_id == key.key_id && k.scheme == key.scheme)
        else {
            self.keys.push(key);
            return Ok(Recorded::Added);
        };
        if old.same_facts(&key) {
            return Ok(Recorded::Unchanged);
        }
        if old.same_key(&key) {
            *old = key;
            return Ok(Recorded::Updated);
        }
        if !replace {
            return Err(TrustedKeysError::Conflict {
                path: self.path.display().to_string(),
                trusted: key_text(old),
                offered: key_text(&key),
                key_id: key.key_id,
                scheme: key.scheme,
            });
        }
        *old = key;
        Ok(Recorded::Replaced)
    }
}

/// One node's signed answer to a `status` request (its keys under the key id asked; empty
/// if it has none or did not answer `ok`).
#[derive(Clone, Copy, Debug)]
pub struct StatusAnswer<'a> {
    /// The node.
    pub node: &'a str,
    /// Its keys under the key id.
    pub keys: &'a [KeyInfo],
}

#[cfg(feature = "sdk")]
impl<'a> From<&'a crate::sdk::NodeKeyStatus> for StatusAnswer<'a> {
    /// A node's answer as the SDK collected it ([`crate::sdk::Client::key_status`]).
    fn from(n: &'a crate::sdk::NodeKeyStatus) -> Self {
        StatusAnswer {
            node: &n.answer.node,
            keys: &n.keys,
        }
    }
}

/// Why status answers do not establish a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgreementError {
    /// No node that answered holds the key READY.
    #[error(
        "no node that answered ({}) holds a READY {scheme} key '{key_id}'",
        list(.answered)
    )]
    NotReady {
        /// The key id.
        key_id: String,
        /// The scheme.
        scheme: Scheme,
        /// The nodes that answered.
        answered: Vec<String>,
    },
    /// READY answers report different keys or committees.
    #[error(
        "the nodes disagree on key {key_id} ({scheme}): {}; one of them lies or is behind, so \
         nothing is trusted",
        .views.iter().map(|(nodes, what)| format!("{} report {what}", list(nodes))).collect::<Vec<_>>().join("; ")
    )]
    Disagreement {
        /// The key id.
        key_id: String,
        /// The scheme.
        scheme: Scheme,
        /// Each distinct report: the nodes, and what they report.
        views: Vec<(Vec<String>, String)>,
    },
    /// Fewer members of the key's committee answered READY than its threshold.
    #[error(
        "only {} of the committee of key {key_id} ({scheme}) answered READY ({}), fewer than \
         its threshold {threshold} of {}: too few to trust it; retry when more nodes answer",
        .ready.len(), list(.ready), list(.committee)
    )]
    TooFew {
        /// The key id.
        key_id: String,
        /// The scheme.
        scheme: Scheme,
        /// The committee members that answered READY.
        ready: Vec<String>,
        /// The threshold the answers report.
        threshold: u16,
        /// The committee the answers report.
        committee: Vec<String>,
    },
}

fn list(nodes: &[String]) -> String {
    if nodes.is_empty() {
        "none".into()
    } else {
        nodes.join(", ")
    }
}

/// The key `key_id` of `scheme` as signed status answers establish it: every READY answer
/// reports the same public key, chain code, version, threshold and committee, and at least
/// `threshold` members of that committee answered READY (so one lying node cannot decide
/// it: the threshold is a majority). Answers that are not READY (pending, deleted, none) are
/// not counted. The entry is dated `now_ms`, source [`TrustSource::Status`].
pub fn agree(
    key_id: &str,
    scheme: Scheme,
    answers: &[StatusAnswer<'_>],
    now_ms: u64,
) -> Result<TrustedKey, AgreementError> {
    let ready: Vec<(&str, &KeyInfo)> = answers
        .iter()
        .filter_map(|a| {
            a.keys
                .iter()
                .find(|k| {
                    k.key_id == key_id && k.scheme == scheme && k.status == Some(KeyStatus::Ready)
                })
                .map(|k| (a.node, k))
        })
        .collect();
    let Some((_, first)) = ready.first() else {
        return Err(AgreementError::NotReady {
            key_id: key_id.to_owned(),
            scheme,
            answered: answers.iter().map(|a| a.node.to_owned()).collect(),
        });
    };
    let facts = |k: &KeyInfo| {
        (
            k.public_key.clone(),
            k.chain_code,
            k.version,
            k.threshold,
            k.participants.clone(),
        )
    };
    let mut views: Vec<(Vec<String>, &KeyInfo)> = Vec::new();
    for (node, k) in &ready {
        match views.iter_mut().find(|(_, v)| facts(v) == facts(k)) {
            Some((nodes, _)) => nodes.push((*node).to_owned()),
            None => views.push((vec![(*node).to_owned()], k)),
        }
    }
    if views.len() > 1 {
        return Err(AgreementError::Disagreement {
            key_id: key_id.to_owned(),
            scheme,
            views: views
                .into_iter()
                .map(|(nodes, k)| {
                    let what = format!(
                        "public key {}, chain code {}, version {}, {} of {}",
                        short_hex(&k.public_key),
                        short_hex(&k.chain_code),
                        k.version,
                        k.threshold,
                        k.participants.join(",")
                    );
                    (nodes, what)
                })
                .collect(),
        });
    }
    let members: Vec<String> = ready
        .iter()
        .filter(|(node, _)| first.participants.iter().any(|p| p == node))
        .map(|(node, _)| (*node).to_owned())
        .collect();
    if members.len() < usize::from(first.threshold) || first.threshold == 0 {
        return Err(AgreementError::TooFew {
            key_id: key_id.to_owned(),
            scheme,
            ready: members,
            threshold: first.threshold,
            committee: first.participants.clone(),
        });
    }
    Ok(TrustedKey::from_info(first, TrustSource::Status, now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node_key: u8, version: u32) -> KeyInfo {
        KeyInfo {
            key_id: "wallet-1".into(),
            scheme: Scheme::Ed25519,
            public_key: vec![node_key; 32],
            chain_code: [7; 32],
            threshold: 2,
            participants: vec!["node0".into(), "node1".into(), "node2".into()],
            version,
            status: Some(KeyStatus::Ready),
        }
    }

    fn trusted(byte: u8) -> TrustedKey {
        TrustedKey::from_info(&info(byte, 1), TrustSource::Keygen, 1_000)
    }

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("keyrack-trusted-{}", wire::random_id()));
            std::fs::create_dir(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_file_round_trips_and_is_written_private() {
        let dir = TempDir::new();
        let path = dir.0.join(DEFAULT_FILE);
        let mut keys = TrustedKeys::load_or_empty(&path).unwrap();
        assert!(keys.keys().is_empty(), "no file: nothing trusted yet");
        assert_eq!(keys.record(trusted(1), false).unwrap(), Recorded::Added);
        let mut ecdsa = trusted(2);
        ecdsa.scheme = Scheme::EcdsaSecp256k1;
        ecdsa.public_key = vec![2; 33];
        ecdsa.source = TrustSource::Status;
        keys.record(ecdsa.clone(), false).unwrap();
        keys.save().unwrap();
        let again = TrustedKeys::load(&path).unwrap();
        assert_eq!(again.get("wallet-1", Scheme::Ed25519), Some(&trusted(1)));
        assert_eq!(again.get("wallet-1", Scheme::EcdsaSecp256k1), Some(&ecdsa));
        assert_eq!(again.get("wallet-2", Scheme::Ed25519), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The text: format, then the entries sorted by key id and scheme, in the fields
        // docs/CONFIG.md lists.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# keyrack trusted keys"), "{text}");
        assert!(text.contains("format = 1\n"), "{text}");
        let ecdsa_at = text.find("scheme = \"ecdsa-secp256k1\"").unwrap();
        let ed_at = text.find("scheme = \"ed25519\"").unwrap();
        assert!(ecdsa_at < ed_at, "{text}");
        for field in [
            "key_id = \"wallet-1\"",
            &format!("public_key = \"{}\"", "01".repeat(32)),
            &format!("chain_code = \"{}\"", "07".repeat(32)),
            "threshold = 2",
            "participants = [\"node0\", \"node1\", \"node2\"]",
            "version = 1",
            "trusted_at_ms = 1000",
            "source = \"keygen\"",
            "source = \"status\"",
        ] {
            assert!(text.contains(field), "{field} in {text}");
        }
        // Saving again replaces the file (no temp file left behind).
        again.save().unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn unknown_fields_other_formats_and_bad_entries_are_refused() {
        let path = Path::new("/etc/keyrack/trusted-keys.toml");
        let entry = |extra: &str| {
            format!(
                "format = 1\n[[keys]]\nkey_id = \"w\"\nscheme = \"ed25519\"\npublic_key = \
                 \"{}\"\nchain_code = \"{}\"\nthreshold = 2\nparticipants = [\"a\", \"b\"]\n\
                 version = 1\ntrusted_at_ms = 5\nsource = \"status\"\n{extra}",
                "ab".repeat(32),
                "cd".repeat(32)
            )
        };
        assert_eq!(
            TrustedKeys::from_toml(&entry(""), path)
                .unwrap()
                .keys()
                .len(),
            1
        );
        let refused = |text: &str| TrustedKeys::from_toml(text, path).unwrap_err().to_string();
        let e = refused(&entry("colour = \"blue\"\n"));
        assert!(e.contains("unknown field `colour`"), "{e}");
        assert!(
            e.starts_with("trusted keys /etc/keyrack/trusted-keys.toml"),
            "{e}"
        );
        let e = refused(&format!("shade = 1\n{}", entry("")));
        assert!(e.contains("unknown field `shade`"), "{e}");
        let e = refused(&entry("").replace("format = 1", "format = 2"));
        assert!(e.contains("format 2 is not one this build reads"), "{e}");
        let e = refused(&entry("").replace("ed25519", "ecdsa-secp256k1"));
        assert!(e.contains("public_key is 32 bytes"), "{e}");
        let e = refused(&entry("").replace("threshold = 2", "threshold = 3"));
        assert!(e.contains("threshold 3 of 2"), "{e}");
        let e = refused(&entry("").replace("\"status\"", "\"rumour\""));
        assert!(e.contains("rumour"), "{e}");
        // Two entries for one key and scheme: which one counts would be a guess.
        let twice = format!("{}{}", entry(""), entry("").replace("format = 1\n", ""));
        let e = refused(&twice);
        assert!(e.contains("key w (ed25519) has two entries"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new();
        let path = dir.0.join(DEFAULT_FILE);
        TrustedKeys::empty(&path).save().unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = TrustedKeys::load_or_empty(&path).unwrap_err().to_string();
        assert!(e.contains("group or others may write it"), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn another_public_key_for_a_trusted_key_is_refused_unless_replaced() {
        let mut keys = TrustedKeys::empty(Path::new("trusted-keys.toml"));
        keys.record(trusted(1), false).unwrap();
        // The same key again, or with a new committee (a reshare): no conflict.
        assert_eq!(keys.record(trusted(1), false).unwrap(), Recorded::Unchanged);
        let mut moved = trusted(1);
        moved.threshold = 3;
        moved.participants.push("node3".into());
        moved.version = 2;
        assert_eq!(
            keys.record(moved.clone(), false).unwrap(),
            Recorded::Updated
        );
        assert_eq!(keys.get("wallet-1", Scheme::Ed25519), Some(&moved));
        // Another public key: refused, saying both, unless asked.
        let e = keys.record(trusted(9), false).unwrap_err();
        assert!(matches!(e, TrustedKeysError::Conflict { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("01010101…01010101"), "{text}");
        assert!(text.contains("09090909…09090909"), "{text}");
        assert!(text.contains("re-created, or a node lies"), "{text}");
        assert_eq!(keys.get("wallet-1", Scheme::Ed25519), Some(&moved));
        // …or another chain code alone.
        let mut chain = moved.clone();
        chain.chain_code = [8; 32];
        assert!(keys.record(chain, false).is_err());
        assert_eq!(keys.record(trusted(9), true).unwrap(), Recorded::Replaced);
        assert_eq!(
            keys.get("wallet-1", Scheme::Ed25519).unwrap().public_key,
            vec![9; 32]
        );
    }

    #[test]
    fn status_answers_establish_a_key_only_when_a_threshold_agrees() {
        let (a, b, c) = ([info(1, 1)], [info(1, 1)], [info(1, 1)]);
        let answer = |node, keys| StatusAnswer { node, keys };
        // All three agree.
        let all = [
            answer("node0", &a[..]),
            answer("node1", &b),
            answer("node2", &c),
        ];
        let key = agree("wallet-1", Scheme::Ed25519, &all, 42).unwrap();
        assert_eq!(key.public_key, vec![1; 32]);
        assert_eq!((key.source, key.trusted_at_ms), (TrustSource::Status, 42));
        // Two of three (the threshold) agree; the third is silent or has nothing.
        let two = [
            answer("node0", &a[..]),
            answer("node2", &c),
            answer("node1", &[]),
        ];
        assert!(agree("wallet-1", Scheme::Ed25519, &two, 42).is_ok());
        // One is not enough.
        let one = [answer("node0", &a[..]), answer("node1", &[])];
        let e = agree("wallet-1", Scheme::Ed25519, &one, 42).unwrap_err();
        assert!(matches!(e, AgreementError::TooFew { .. }), "{e}");
        assert!(e.to_string().contains("only 1 of the committee"), "{e}");
        // A node outside the committee does not count toward the threshold.
        let outsider = [answer("node0", &a[..]), answer("node9", &b)];
        assert!(agree("wallet-1", Scheme::Ed25519, &outsider, 42).is_err());
        // One node reporting another key (or version, committee) refuses it all.
        let liar = [info(6, 1)];
        let lie = [
            answer("node0", &a[..]),
            answer("node1", &b),
            answer("node2", &liar),
        ];
        let e = agree("wallet-1", Scheme::Ed25519, &lie, 42).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("node0, node1 report public key 01010101…"),
            "{text}"
        );
        assert!(text.contains("node2 report public key 06060606…"), "{text}");
        let behind = [info(1, 2)];
        let lie = [
            answer("node0", &a[..]),
            answer("node1", &b),
            answer("node2", &behind),
        ];
        assert!(matches!(
            agree("wallet-1", Scheme::Ed25519, &lie, 42),
            Err(AgreementError::Disagreement { .. })
        ));
        // Not READY anywhere (pending, deleted, unknown): nothing to trust.
        let mut deleted = info(1, 1);
        deleted.status = Some(KeyStatus::Deleted);
        let gone = [deleted];
        let e = agree(
            "wallet-1",
            Scheme::Ed25519,
            &[answer("node0", &gone[..])],
            42,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("no node that answered (node0)"),
            "{e}"
        );
        // Another scheme's key is not this one.
        let e = agree("wallet-1", Scheme::SchnorrSecp256k1, &all, 42).unwrap_err();
        assert!(matches!(e, AgreementError::NotReady { .. }), "{e}");
    }

    /// The example in docs/CONFIG.md parses, and every field is in its table.
    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../../docs/CONFIG.md");
        let section = doc
            .split("## Trusted keys (`trusted-keys.toml`)")
            .nth(1)
            .expect("docs/CONFIG.md has a trusted keys section");
        let example = section
            .split("```toml")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .expect("the section has a toml example");
        let keys = TrustedKeys::from_toml(example, Path::new("trusted-keys.toml")).unwrap();
        let key = keys.get("wallet-1", Scheme::Ed25519).unwrap();
        assert_eq!(key.source, TrustSource::Keygen);
        for field in [
            "format",
            "keys",
            "keys.key_id",
            "keys.scheme",
            "keys.public_key",
            "keys.chain_code",
            "keys.threshold",
            "keys.participants",
            "keys.version",
            "keys.trusted_at_ms",
            "keys.source",
        ] {
            assert!(section.contains(&format!("| `{field}` |")), "{field}");
        }
    }

    #[test]
    fn short_hex_keeps_both_ends() {
        assert_eq!(short_hex(&[0xab; 32]), "abababab…abababab");
        assert_eq!(short_hex(&[1, 2]), "0102");
    }
}
