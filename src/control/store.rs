//! The client's state directory: the instance UID, the last applied remote configuration and
//! the audit log of remote changes.
//!
//! A restart must be the same agent to the control plane, and a node that starts while the
//! control plane is unreachable must come up with the configuration it was last given. Both are
//! small files replaced atomically (write a temporary file, fsync it, rename it over the old
//! one, fsync the directory), so a kill -9 or power loss leaves either the old or the new
//! version, never a torn one. Every remote change is also appended to `opamp-audit.jsonl`.

use super::OpampError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const UID_FILE: &str = "opamp-instance-uid";
pub(crate) const REMOTE_FILE: &str = "opamp-remote-config.json";
const AUDIT_FILE: &str = "opamp-audit.jsonl";
/// The audit log is rotated to `.1` past this size, so it cannot fill the disk.
const AUDIT_MAX_BYTES: u64 = 1024 * 1024;

fn state_err(path: &Path, e: impl std::fmt::Display) -> OpampError {
    OpampError::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Creates the state directory (owner-only) when it is missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), OpampError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| state_err(dir, e))
}

/// Replaces `path` with `data` so that a crash leaves the old or the new content.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), OpampError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        state_err(path, e)
    })
}

/// A version 7 UUID: 48 bits of Unix milliseconds, then random bits (version and variant set).
pub(crate) fn new_uuid_v7() -> [u8; 16] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b[6..]).is_err() {
        // The kernel's random source failing is next to impossible; fall back rather than stop.
        for x in &mut b[6..] {
            *x = fastrand::u8(..);
        }
    }
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    b
}

/// The canonical text form, e.g. `0190a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b`.
pub(crate) fn uuid_string(b: &[u8]) -> String {
    let h = hex(b);
    if b.len() != 16 {
        return h;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let digits: String = s.trim().chars().filter(|c| *c != '-').collect();
    if digits.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The instance UID kept in `dir`, created (UUIDv7) and persisted on first use. A damaged file
/// is replaced with a new UID and a warning: the agent must run, and the server will see a new
/// agent, which is the truth.
pub(crate) fn load_or_create_uid(dir: &Path) -> Result<[u8; 16], OpampError> {
    ensure_dir(dir)?;
    let path = dir.join(UID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            if let Some(uid) = parse_uuid(&text) {
                return Ok(uid);
            }
            tracing::warn!(path = %path.display(), "instance UID file is damaged; making a new one");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(state_err(&path, e)),
    }
    let uid = new_uuid_v7();
    store_uid(dir, &uid)?;
    Ok(uid)
}

/// Persists a UID (a new one, or the one the server assigned).
pub(crate) fn store_uid(dir: &Path, uid: &[u8; 16]) -> Result<(), OpampError> {
    write_atomic(
        &dir.join(UID_FILE),
        format!("{}\n", uuid_string(uid)).as_bytes(),
    )
}

/// A remote configuration that was applied: the server's hash and the TOML text.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AppliedRemote {
    pub(crate) hash: Vec<u8>,
    pub(crate) toml: String,
}

impl AppliedRemote {
    pub(crate) fn hash_hex(&self) -> String {
        hex(&self.hash)
    }
}

impl std::fmt::Debug for AppliedRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text may hold an explicitly allowed secret: only its size is shown.
        f.debug_struct("AppliedRemote")
            .field("hash", &self.hash_hex())
            .field("toml_bytes", &self.toml.len())
            .finish()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RemoteFile {
    hash: String,
    toml: String,
    applied_unix: u64,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The last remote configuration applied on this node, for offline start. `Ok(None)` when there
/// is none; an error names the file when it exists but cannot be used.
pub(crate) fn load_last_applied(state_dir: &Path) -> Result<Option<AppliedRemote>, OpampError> {
    let path = state_dir.join(REMOTE_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state_err(&path, e)),
    };
    let f: RemoteFile = serde_json::from_str(&text)
        .map_err(|e| state_err(&path, format!("not a saved remote configuration: {e}")))?;
    let hash = unhex(&f.hash).ok_or_else(|| state_err(&path, "the hash is not hex"))?;
    Ok(Some(AppliedRemote { hash, toml: f.toml }))
}

/// Saves the applied remote configuration (owner-only file, replaced atomically).
pub(crate) fn save_applied(state_dir: &Path, r: &AppliedRemote) -> Result<(), OpampError> {
    ensure_dir(state_dir)?;
    let body = serde_json::to_vec(&RemoteFile {
        hash: r.hash_hex(),
        toml: r.toml.clone(),
        applied_unix: now_unix(),
    })
    .map_err(|e| state_err(&state_dir.join(REMOTE_FILE), e))?;
    write_atomic(&state_dir.join(REMOTE_FILE), &body)
}

/// One line of the audit log: what the server asked for and what the agent did. Setting names
/// only, never values.
#[derive(serde::Serialize)]
pub(crate) struct AuditEntry<'a> {
    pub event: &'a str,
    pub hash: String,
    pub status: &'a str,
    pub keys: Vec<String>,
    pub error: Option<&'a str>,
}

/// Appends to `opamp-audit.jsonl` (fsynced), rotating it to `.1` past 1 MiB.
pub(crate) fn audit(state_dir: &Path, entry: &AuditEntry<'_>) -> Result<(), OpampError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(AUDIT_FILE);
    if fs::metadata(&path).is_ok_and(|m| m.len() > AUDIT_MAX_BYTES) {
        let rotated: PathBuf = state_dir.join(format!("{AUDIT_FILE}.1"));
        fs::rename(&path, rotated).map_err(|e| state_err(&path, e))?;
    }
    let mut line = serde_json::to_vec(&serde_json::json!({
        "time_unix": now_unix(),
        "event": entry.event,
        "config_hash": entry.hash,
        "status": entry.status,
        "keys": entry.keys,
        "error": entry.error,
    }))
    .map_err(|e| state_err(&path, e))?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| state_err(&path, e))?;
    f.write_all(&line)
        .and_then(|_| f.sync_data())
        .map_err(|e| state_err(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v7_layout_and_text_round_trip() {
        let a = new_uuid_v7();
        let b = new_uuid_v7();
        assert_ne!(a, b);
        assert_eq!(a[6] >> 4, 7, "version 7");
        assert_eq!(a[8] >> 6, 0b10, "RFC 4122 variant");
        let ms = u64::from_be_bytes([0, 0, a[0], a[1], a[2], a[3], a[4], a[5]]);
        let now = now_unix() * 1000;
        assert!(ms <= now + 1000 && ms + 60_000 > now, "{ms} vs {now}");
        let s = uuid_string(&a);
        assert_eq!(s.len(), 36);
        assert_eq!(parse_uuid(&s), Some(a));
    }

    #[test]
    fn uid_is_created_once_and_reused_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = load_or_create_uid(&state).unwrap();
        assert_eq!(load_or_create_uid(&state).unwrap(), first);
        let assigned = new_uuid_v7();
        store_uid(&state, &assigned).unwrap();
        assert_eq!(load_or_create_uid(&state).unwrap(), assigned);
        fs::write(state.join(UID_FILE), "garbage").unwrap();
        let fresh = load_or_create_uid(&state).unwrap();
        assert_ne!(fresh, assigned);
        assert_eq!(load_or_create_uid(&state).unwrap(), fresh);
        assert!(!state.join("opamp-instance-uid.tmp").exists());
    }

    #[test]
    fn applied_remote_round_trip_and_damage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_last_applied(dir.path()).unwrap().is_none());
        let r = AppliedRemote {
            hash: vec![1, 2, 0xab],
            toml: "sample_interval_min_sec = 2\n".into(),
        };
        save_applied(dir.path(), &r).unwrap();
        assert_eq!(load_last_applied(dir.path()).unwrap(), Some(r));
        fs::write(dir.path().join(REMOTE_FILE), "{").unwrap();
        let e = load_last_applied(dir.path()).unwrap_err().to_string();
        assert!(e.contains(REMOTE_FILE), "{e}");
    }

    #[test]
    fn offline_layer_is_checked_against_todays_allow_list() {
        use super::super::offline_layer;
        use crate::config::remote::AllowList;
        let dir = tempfile::tempdir().unwrap();
        assert!(
            offline_layer(dir.path(), &AllowList::default())
                .unwrap()
                .is_none()
        );
        let r = AppliedRemote {
            hash: vec![1],
            toml: "sample_interval_min_sec = 2\nservers = {}\n".into(),
        };
        save_applied(dir.path(), &r).unwrap();
        let (saved, layer) = offline_layer(dir.path(), &AllowList::default())
            .unwrap()
            .unwrap();
        assert_eq!(saved, r);
        assert_eq!(layer.settings["sample_interval_min_sec"], "2");
        let narrow = AllowList::parse("servers").unwrap();
        let e = offline_layer(dir.path(), &narrow).unwrap_err().to_string();
        assert!(
            e.contains(REMOTE_FILE) && e.contains("sample_interval_min_sec"),
            "{e}"
        );
    }

    #[test]
    fn audit_appends_lines_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let e = AuditEntry {
            event: "remote_config",
            hash: "ab".into(),
            status: "APPLIED",
            keys: vec!["sample_interval_min_sec".into()],
            error: None,
        };
        audit(dir.path(), &e).unwrap();
        audit(dir.path(), &e).unwrap();
        let text = fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["status"], "APPLIED");
        fs::write(dir.path().join(AUDIT_FILE), vec![b'x'; 1024 * 1024 + 1]).unwrap();
        audit(dir.path(), &e).unwrap();
        assert!(dir.path().join("opamp-audit.jsonl.1").exists());
        let text = fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        assert_eq!(text.lines().count(), 1);
    }
}
