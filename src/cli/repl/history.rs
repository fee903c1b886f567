//! The call history (`history`): one record per ended call, kept as a
//! JSON array in `$XDG_DATA_HOME/sipline/history.json`
//! (`~/.local/share/sipline/history.json` when `XDG_DATA_HOME` is unset
//! or relative, XDG Base Directory specification). The newest
//! [`MAX_ENTRIES`] records are kept.
//!
//! The record building and the file format are pure; only [`append`] and
//! [`load`] touch the file.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Records kept in the file.
pub const MAX_ENTRIES: usize = 500;

/// One finished call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the call began, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub time: String,
    /// `outgoing` or `incoming`.
    pub direction: String,
    pub peer: String,
    /// Seconds from the answer to the end (None: never answered).
    pub duration_s: Option<f64>,
    /// How it ended (e.g. `we hung up`, `486 Busy Here`, `missed`).
    pub result: String,
}

/// The XDG data directory of sipline for an environment lookup.
pub fn data_dir_with(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("XDG_DATA_HOME") {
        Some(d) if Path::new(&d).is_absolute() => Some(PathBuf::from(d).join("sipline")),
        _ => env("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".local/share/sipline")),
    }
}

/// The XDG data directory of sipline.
pub fn data_dir() -> Option<PathBuf> {
    data_dir_with(|k| std::env::var(k).ok())
}

/// The history file.
pub fn default_path() -> Option<PathBuf> {
    data_dir().map(|d| d.join("history.json"))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a system time (proleptic Gregorian, UTC).
pub fn utc_timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), after H. Hinnant's
/// well-known civil calendar algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses the file's text; an empty file is an empty history.
pub fn parse(text: &str) -> Result<Vec<Record>, serde_json::Error> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text)
}

/// Adds `record` to `records`, dropping the oldest beyond [`MAX_ENTRIES`].
pub fn push(records: &mut Vec<Record>, record: Record) {
    records.push(record);
    if records.len() > MAX_ENTRIES {
        let extra = records.len() - MAX_ENTRIES;
        records.drain(..extra);
    }
}

/// Reads the history file (missing: empty).
pub fn load(path: &Path) -> io::Result<Vec<Record>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Appends one record to the file (created with its directory; written
/// to a temporary file and renamed, so a crash never leaves half a file).
/// Phones running at once take turns: the read-modify-write runs under an
/// exclusive lock on `history.json.lock`, and each writes its own
/// temporary file. A file that does not parse is never overwritten: it is
/// kept as `history.json.damaged-<unix time>` (returned) and a new history
/// starts.
pub fn append(path: &Path, record: Record) -> io::Result<Option<PathBuf>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("json.lock"))?;
    lock.lock()?;
    let mut kept = None;
    let mut records = match load(path) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs();
            let aside = path.with_extension(format!("json.damaged-{secs}"));
            std::fs::rename(path, &aside)?;
            kept = Some(aside);
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    push(&mut records, record);
    let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
    let text = serde_json::to_string_pretty(&records).map_err(io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(kept)
}

/// The `history` listing of the newest `count` records, newest last.
pub fn render(records: &[Record], count: usize) -> String {
    if records.is_empty() {
        return "no calls yet".into();
    }
    let start = records.len().saturating_sub(count);
    let mut s = String::new();
    for r in &records[start..] {
        if !s.is_empty() {
            s.push('\n');
        }
        let arrow = if r.direction == "incoming" {
            "<-"
        } else {
            "->"
        };
        let dur = r
            .duration_s
            .map(|d| super::state::clock(Duration::from_secs_f64(d.max(0.0))))
            .unwrap_or_else(|| "--:--".into());
        s.push_str(&format!(
            "{}  {arrow} {}  {dur}  {}",
            r.time.replace('T', " ").trim_end_matches('Z'),
            super::state::short_peer(&r.peer),
            r.result
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_history_is_kept_aside_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        std::fs::write(&path, "[{\"time\": oops").unwrap();
        let kept = append(&path, rec("sip:a@x")).unwrap().expect("kept aside");
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "[{\"time\": oops");
        assert_eq!(load(&path).unwrap(), vec![rec("sip:a@x")]);
        // A sound file is simply appended to.
        assert_eq!(append(&path, rec("sip:b@x")).unwrap(), None);
        assert_eq!(load(&path).unwrap().len(), 2);
    }

    #[test]
    fn phones_appending_at_once_lose_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("history.json");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for j in 0..5 {
                        append(&path, rec(&format!("sip:{i}-{j}@x"))).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(load(&path).unwrap().len(), 40);
    }

    fn rec(peer: &str) -> Record {
        Record {
            time: "2026-12-03T21:00:00Z".into(),
            direction: "outgoing".into(),
            peer: peer.into(),
            duration_s: Some(61.2),
            result: "we hung up".into(),
        }
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC (a leap day).
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(utc_timestamp(t), "2000-02-29T12:34:56Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_256_000);
        assert_eq!(utc_timestamp(t), "2026-12-03T00:00:00Z");
    }

    #[test]
    fn the_data_dir_follows_xdg() {
        let env = |xdg: Option<&'static str>| {
            move |k: &str| match k {
                "XDG_DATA_HOME" => xdg.map(String::from),
                "HOME" => Some("/home/al".to_string()),
                _ => None,
            }
        };
        assert_eq!(
            data_dir_with(env(Some("/data"))),
            Some(PathBuf::from("/data/sipline"))
        );
        assert_eq!(
            data_dir_with(env(Some("relative"))),
            Some(PathBuf::from("/home/al/.local/share/sipline"))
        );
        assert_eq!(
            data_dir_with(env(None)),
            Some(PathBuf::from("/home/al/.local/share/sipline"))
        );
    }

    #[test]
    fn the_file_keeps_the_newest_records_and_survives_reloading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/history.json");
        assert_eq!(load(&path).unwrap(), vec![]);
        append(&path, rec("sip:a@x")).unwrap();
        append(&path, rec("sip:b@x")).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].peer, "sip:b@x");
        let mut many = Vec::new();
        for i in 0..MAX_ENTRIES + 3 {
            push(&mut many, rec(&format!("sip:{i}@x")));
        }
        assert_eq!(many.len(), MAX_ENTRIES);
        assert_eq!(many[0].peer, "sip:3@x");
        std::fs::write(&path, "not json").unwrap();
        assert!(load(&path).is_err());
    }

    #[test]
    fn render_lists_the_newest_calls() {
        let mut r = vec![rec("sip:a@x"), rec("sip:b@x")];
        r[1].direction = "incoming".into();
        r[1].duration_s = None;
        r[1].result = "missed".into();
        let text = render(&r, 1);
        assert_eq!(text, "2026-12-03 21:00:00  <- b@x  --:--  missed");
        let text = render(&r, 10);
        assert!(text.starts_with("2026-12-03 21:00:00  -> a@x  01:01  we hung up\n"));
        assert_eq!(render(&[], 3), "no calls yet");
    }
}
