//! `imrelay store …`: offline inspection of the deferred store.
//!
//! These commands open the store with the same recovery the server runs (`list`, `show`,
//! `stats`) or only read it (`verify`). Output is for people: aligned columns, sizes in
//! bytes, times in UTC.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, Overrides};
use crate::store::core::Policy;
use crate::store::fs::{list_segments, verify, FsStore};
use crate::store::record::MessageId;
use crate::store::scan::Tail;

/// What `imrelay store` was asked to do.
pub enum StoreCommand {
    List(Option<String>),
    Show(String, String),
    Stats,
    Verify,
}

/// Runs a store command; the exit code says whether it worked (and, for `verify`, whether
/// the store is intact).
pub fn store(config: Option<&Path>, state_dir: Option<&Path>, cmd: StoreCommand) -> ExitCode {
    let cfg = match Config::load(
        config,
        &Overrides::default(),
        std::env::var("STATE_DIRECTORY").ok().as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imrelay: {e}");
            return ExitCode::from(2);
        }
    };
    let state_dir = state_dir.map_or(cfg.server.state_dir.clone(), Path::to_path_buf);
    let policy = cfg.store.policy();
    let result = match cmd {
        StoreCommand::Verify => return verify_cmd(&state_dir),
        StoreCommand::List(uri) => list(&state_dir, &policy, uri.as_deref()),
        StoreCommand::Show(uri, id) => show(&state_dir, &policy, &uri, &id),
        StoreCommand::Stats => stats(&state_dir, &policy),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imrelay: {e}");
            ExitCode::from(1)
        }
    }
}

fn open(state_dir: &Path, policy: &Policy) -> Result<FsStore, String> {
    if !state_dir.join("store").is_dir() {
        return Err(format!(
            "no store under {} (is the state directory right?)",
            state_dir.display()
        ));
    }
    FsStore::open(state_dir, policy.clone(), 0)
        .map(|(s, _)| s)
        .map_err(|e| format!("cannot open the store under {}: {e}", state_dir.display()))
}

/// `2026-11-26T12:00:00.000Z` from Unix milliseconds.
pub fn utc(ms: u64) -> String {
    crate::wire::rfc3339(ms)
}

fn list(state_dir: &Path, policy: &Policy, uri: Option<&str>) -> Result<(), String> {
    let mut s = open(state_dir, policy)?;
    let mut out = std::io::stdout().lock();
    match uri {
        None => {
            let mut rows: Vec<(Vec<u8>, u32, u64)> = s
                .core()
                .recipients()
                .map(|(a, n, b)| (a.to_vec(), n, b))
                .collect();
            rows.sort();
            let _ = writeln!(out, "{:>8} {:>12}  RECIPIENT", "MESSAGES", "BYTES");
            for (aor, n, bytes) in rows {
                let _ = writeln!(out, "{n:>8} {bytes:>12}  {}", String::from_utf8_lossy(&aor));
            }
        }
        Some(uri) => {
            let ids: Vec<MessageId> = s.core().pending(uri.as_bytes()).map(|e| e.id).collect();
            if ids.is_empty() {
                let _ = writeln!(out, "no messages waiting for {uri}");
                return Ok(());
            }
            let _ = writeln!(
                out,
                "{:<32}  {:<24}  {:<24}  {:>10}  {:<20}  SENDER",
                "ID", "STORED", "EXPIRES", "BYTES", "TYPE"
            );
            for id in ids {
                let line = s
                    .with_message(uri.as_bytes(), id, |m, body| {
                        format!(
                            "{:<32}  {:<24}  {:<24}  {:>10}  {:<20}  {}",
                            id.to_string(),
                            utc(m.stored_at_ms),
                            utc(m.expires_at_ms),
                            body.len(),
                            String::from_utf8_lossy(m.content_type),
                            String::from_utf8_lossy(m.sender)
                        )
                    })
                    .map_err(|e| format!("message {id}: {e}"))?;
                let _ = writeln!(out, "{line}");
            }
        }
    }
    Ok(())
}

fn show(state_dir: &Path, policy: &Policy, uri: &str, id: &str) -> Result<(), String> {
    let id: MessageId = id
        .parse()
        .map_err(|_| format!("{id:?} is not a message id (32 hexadecimal digits)"))?;
    let mut s = open(state_dir, policy)?;
    s.with_message(uri.as_bytes(), id, |m, body| {
        eprintln!("id:           {id}");
        eprintln!("recipient:    {}", String::from_utf8_lossy(m.recipient));
        eprintln!("sender:       {}", String::from_utf8_lossy(m.sender));
        eprintln!("stored:       {}", utc(m.stored_at_ms));
        eprintln!("expires:      {}", utc(m.expires_at_ms));
        eprintln!("content type: {}", String::from_utf8_lossy(m.content_type));
        eprintln!("size:         {} bytes", body.len());
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(body);
        let _ = out.flush();
    })
    .map_err(|e| format!("{uri} {id}: {e}"))
}

fn stats(state_dir: &Path, policy: &Policy) -> Result<(), String> {
    let s = open(state_dir, policy)?;
    let segs = list_segments(&state_dir.join("store")).map_err(|e| e.to_string())?;
    let seg_count: usize = segs.iter().map(|(_, v)| v.len()).sum();
    let seg_bytes: u64 = segs
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let (recipients, messages, bytes) = s
        .core()
        .recipients()
        .fold((0usize, 0u64, 0u64), |(r, m, b), (_, n, by)| {
            (r + 1, m + u64::from(n), b + by)
        });
    println!("recipients with messages: {recipients}");
    println!("messages waiting:         {messages}");
    println!("body bytes waiting:       {bytes}");
    println!("segments:                 {seg_count}");
    println!("segment bytes on disk:    {seg_bytes}");
    Ok(())
}

fn verify_cmd(state_dir: &Path) -> ExitCode {
    let checks = match verify(state_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "imrelay: cannot read the store under {}: {e}",
                state_dir.display()
            );
            return ExitCode::from(2);
        }
    };
    let mut damaged = 0;
    for c in &checks {
        let tail = match c.tail {
            Tail::Clean => String::new(),
            Tail::Zeroes { at } => format!(", zero-filled from byte {at}"),
            Tail::Torn { at, error } => {
                format!(", torn tail at byte {at} ({error}; recovery cuts it)")
            }
            Tail::NewerVersion { at, version } => {
                format!(", records of newer format version {version} from byte {at}")
            }
        };
        if c.corrupt > 0 || c.misfiled {
            damaged += 1;
            println!(
                "DAMAGED {}: {} records, {} corrupt region(s){}{tail}",
                c.path.display(),
                c.records,
                c.corrupt,
                if c.misfiled {
                    ", header names another recipient"
                } else {
                    ""
                }
            );
        } else if !tail.is_empty() {
            println!("ok      {}: {} records{tail}", c.path.display(), c.records);
        }
    }
    println!("{} segment(s) checked, {damaged} damaged", checks.len());
    if damaged > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_prints_civil_time() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(1_764_158_400_123), "2025-11-26T12:00:00.123Z");
    }
}
