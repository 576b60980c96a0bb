//! The events the agent keeps for `Watch`, per professional, in one redb
//! file of the data directory (`events.redb`).
//!
//! The agent is the only subscriber of each of its devices at the server.
//! Its follower turns every server event into the events a caller sees
//! (decrypted messages, consult changes, membership), and appends them
//! together with the server cursor after that event, in one durable write
//! transaction. So after any crash the follower resumes at the server where
//! the log ends: handling an event twice is harmless (a message is logged
//! once, by its sequence), and no event is lost. A caller's cursor is a
//! position in this log, so it stays valid across restarts of the caller,
//! the agent and the server.

use std::{path::Path, time::SystemTime};

use prost::Message as _;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use samenop_proto::agent::v1 as agent;
use uuid::Uuid;

/// professional (16 bytes) ‖ position (u64, big-endian) → `WatchResponse`
/// without its cursor.
const EVENTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("events");
/// "cursor/" ‖ professional → the server cursor after the last event
/// handled; "logged/" ‖ professional ‖ consult → the last thread sequence
/// logged.
const META: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("meta");

/// The log.
pub(crate) struct Log {
    db: Database,
}

/// Why the log failed.
#[derive(Debug, thiserror::Error)]
#[error("the agent's event log: {0}")]
pub(crate) struct LogError(String);

fn err(e: impl std::fmt::Display) -> LogError {
    LogError(e.to_string())
}

fn event_key(professional: Uuid, position: u64) -> Vec<u8> {
    let mut key = professional.as_bytes().to_vec();
    key.extend_from_slice(&position.to_be_bytes());
    key
}

fn cursor_key(professional: Uuid) -> Vec<u8> {
    let mut key = b"cursor/".to_vec();
    key.extend_from_slice(professional.as_bytes());
    key
}

fn logged_key(professional: Uuid, consult: Uuid) -> Vec<u8> {
    let mut key = b"logged/".to_vec();
    key.extend_from_slice(professional.as_bytes());
    key.extend_from_slice(consult.as_bytes());
    key
}

/// What one server event became, to append in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The events for callers, in order.
    pub(crate) events: Vec<agent::watch_response::Event>,
    /// When the server event happened.
    pub(crate) occurred_at: Option<SystemTime>,
    /// The last thread sequence logged, per consult, after this batch.
    pub(crate) logged: Vec<(Uuid, u64)>,
}

impl Log {
    /// Opens (or creates) the log in `dir`.
    ///
    /// # Errors
    /// [`LogError`] when the file cannot be opened; it is left as it is.
    pub(crate) fn open(dir: &Path) -> Result<Log, LogError> {
        let path = dir.join("events.redb");
        let db = Database::create(&path).map_err(err)?;
        // It holds decrypted messages: its owner's only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        }
        let mut tx = db.begin_write().map_err(err)?;
        tx.set_durability(Durability::Immediate).map_err(err)?;
        tx.open_table(EVENTS).map_err(err)?;
        tx.open_table(META).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Log { db })
    }

    /// The server cursor to resume `professional`'s subscription from.
    ///
    /// # Errors
    /// [`LogError`] when the log cannot be read.
    pub(crate) fn server_cursor(&self, professional: Uuid) -> Result<Option<String>, LogError> {
        let tx = self.db.begin_read().map_err(err)?;
        let meta = tx.open_table(META).map_err(err)?;
        Ok(meta
            .get(cursor_key(professional).as_slice())
            .map_err(err)?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// The last thread sequence logged for `consult`.
    ///
    /// # Errors
    /// [`LogError`] when the log cannot be read.
    pub(crate) fn logged(&self, professional: Uuid, consult: Uuid) -> Result<u64, LogError> {
        let tx = self.db.begin_read().map_err(err)?;
        let meta = tx.open_table(META).map_err(err)?;
        Ok(meta
            .get(logged_key(professional, consult).as_slice())
            .map_err(err)?
            .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// The position of `professional`'s last event; 0 when none.
    ///
    /// # Errors
    /// [`LogError`] when the log cannot be read.
    pub(crate) fn last(&self, professional: Uuid) -> Result<u64, LogError> {
        let tx = self.db.begin_read().map_err(err)?;
        let events = tx.open_table(EVENTS).map_err(err)?;
        let range = event_key(professional, 0)..=event_key(professional, u64::MAX);
        Ok(events
            .range::<&[u8]>(range.start().as_slice()..=range.end().as_slice())
            .map_err(err)?
            .next_back()
            .transpose()
            .map_err(err)?
            .map_or(0, |(k, _)| position(k.value())))
    }

    /// Appends `batch` for `professional` with the server cursor after the
    /// event it came from, durably; returns the position of the last event.
    ///
    /// # Errors
    /// [`LogError`]; nothing was appended.
    pub(crate) fn append(
        &self,
        professional: Uuid,
        batch: Batch,
        server_cursor: &str,
    ) -> Result<u64, LogError> {
        let mut last = self.last(professional)?;
        let mut tx = self.db.begin_write().map_err(err)?;
        tx.set_durability(Durability::Immediate).map_err(err)?;
        {
            let mut events = tx.open_table(EVENTS).map_err(err)?;
            let occurred_at = batch.occurred_at.map(prost_types::Timestamp::from);
            for event in batch.events {
                last += 1;
                let value = agent::WatchResponse {
                    cursor: String::new(),
                    occurred_at,
                    event: Some(event),
                }
                .encode_to_vec();
                events
                    .insert(event_key(professional, last).as_slice(), value.as_slice())
                    .map_err(err)?;
            }
            let mut meta = tx.open_table(META).map_err(err)?;
            meta.insert(
                cursor_key(professional).as_slice(),
                server_cursor.as_bytes(),
            )
            .map_err(err)?;
            for (consult, sequence) in batch.logged {
                meta.insert(
                    logged_key(professional, consult).as_slice(),
                    sequence.to_be_bytes().as_slice(),
                )
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(last)
    }

    /// At most `limit` of `professional`'s events after `after`, each with
    /// its cursor.
    ///
    /// # Errors
    /// [`LogError`] when the log cannot be read.
    pub(crate) fn read(
        &self,
        professional: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<agent::WatchResponse>, LogError> {
        let tx = self.db.begin_read().map_err(err)?;
        let events = tx.open_table(EVENTS).map_err(err)?;
        let from = event_key(professional, after.saturating_add(1));
        let to = event_key(professional, u64::MAX);
        let mut found = Vec::new();
        for item in events
            .range::<&[u8]>(from.as_slice()..=to.as_slice())
            .map_err(err)?
            .take(limit)
        {
            let (key, value) = item.map_err(err)?;
            let mut event = agent::WatchResponse::decode(value.value()).map_err(err)?;
            event.cursor = position(key.value()).to_string();
            found.push(event);
        }
        Ok(found)
    }
}

fn position(key: &[u8]) -> u64 {
    key.get(16..24)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}
