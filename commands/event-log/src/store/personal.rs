//! Crypto-shredding: the personal fields of an event (see
//! [`domain::personal_data`]) are stored encrypted with a key per customer;
//! erasing the customer destroys the key.
//!
//! - **Append** ([`seal`]): each personal field becomes
//!   `{"$pii": "<base64 nonce‖ciphertext‖tag>"}`, AES-256-GCM with the
//!   subject's key, the associated data binding it to its aggregate type,
//!   event type, field and subject (a ciphertext moved elsewhere does not
//!   open). Keys are created on first use. An append carrying the erasure
//!   event destroys the key (and the aggregate's snapshot) *before* the event
//!   is written: should the append then fail, the data is already unreadable
//!   and a retry of the erasure completes it — failing towards privacy.
//! - **Read** ([`open`]): fields are decrypted; for an erased subject every
//!   personal field, encrypted or written in plain text before this existed,
//!   reads as its placeholder ([`domain::personal_data::Erased`]).
//!
//! Keys live in `personal_data_keys` of the read-model database. They are
//! fetched per batch, never cached across calls, so an erasure on one server
//! instance is seen by every other at its next read.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use domain::personal_data::{personal_fields, PersonalField, Subject, ERASURE_EVENT};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;

use super::{AppendRequest, EventLog, RecordedEvent, StoreError};

/// The JSON key marking an encrypted field.
pub const SEALED: &str = "$pii";

const KEY_LEN: usize = 32;

/// What the vault knows of a subject.
#[derive(Clone)]
enum KeyState {
    Live(Vec<u8>),
    Erased,
}

/// Key storage on the read-model database.
enum Vault<'a> {
    Postgres(&'a sqlx::PgPool),
    Sqlite {
        writer: &'a sqlx::SqlitePool,
        reader: &'a sqlx::SqlitePool,
    },
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

impl<'a> Vault<'a> {
    fn of(log: &'a EventLog) -> Self {
        match log.read_model() {
            EventLog::Postgres(pg) => Vault::Postgres(pg.pool()),
            EventLog::Sqlite(s) => Vault::Sqlite {
                writer: s.writer(),
                reader: s.reader(),
            },
            #[cfg(feature = "esdb")]
            EventLog::Esdb(_) => unreachable!("read_model() of an EventStoreDB log is SQL"),
        }
    }

    /// The keys of `subjects` (absent: never had one).
    async fn keys(&self, subjects: &[String]) -> Result<HashMap<String, KeyState>, StoreError> {
        if subjects.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, Option<Vec<u8>>)> = match self {
            Vault::Postgres(p) => sqlx::query_as(
                "SELECT subject_id, key_bytes FROM personal_data_keys WHERE subject_id = ANY($1)",
            )
            .bind(subjects)
            .fetch_all(*p)
            .await
            .map_err(db)?,
            Vault::Sqlite { reader, .. } => {
                let mut out = Vec::new();
                // SQLite has no arrays; subjects per batch are few.
                for chunk in subjects.chunks(500) {
                    let marks = vec!["?"; chunk.len()].join(",");
                    let sql = format!(
                        "SELECT subject_id, key_bytes FROM personal_data_keys WHERE subject_id IN ({marks})"
                    );
                    let mut q = sqlx::query_as(&sql);
                    for s in chunk {
                        q = q.bind(s);
                    }
                    out.extend(q.fetch_all(*reader).await.map_err(db)?);
                }
                out
            }
        };
        Ok(rows
            .into_iter()
            .map(|(s, k)| (s, k.map_or(KeyState::Erased, KeyState::Live)))
            .collect())
    }

    /// The keys of `subjects`, creating those that have none.
    async fn keys_for_writing(
        &self,
        subjects: &[String],
    ) -> Result<HashMap<String, KeyState>, StoreError> {
        let mut keys = self.keys(subjects).await?;
        let rng = SystemRandom::new();
        for s in subjects {
            if keys.contains_key(s) {
                continue;
            }
            let mut key = vec![0u8; KEY_LEN];
            rng.fill(&mut key)
                .map_err(|_| StoreError::Database("no randomness for a data key".into()))?;
            // Concurrent creators race on the primary key; the winner's key is read back.
            match self {
                Vault::Postgres(p) => {
                    sqlx::query("INSERT INTO personal_data_keys (subject_id, key_bytes) VALUES ($1, $2) ON CONFLICT (subject_id) DO NOTHING")
                        .bind(s).bind(&key).execute(*p).await.map_err(db)?;
                }
                Vault::Sqlite { writer, .. } => {
                    sqlx::query("INSERT INTO personal_data_keys (subject_id, key_bytes) VALUES (?1, ?2) ON CONFLICT (subject_id) DO NOTHING")
                        .bind(s).bind(&key).execute(*writer).await.map_err(db)?;
                }
            }
        }
        let missing: Vec<String> = subjects
            .iter()
            .filter(|s| !keys.contains_key(*s))
            .cloned()
            .collect();
        keys.extend(self.keys(&missing).await?);
        Ok(keys)
    }

    /// Destroys `subject`'s key (recording that it existed) and drops the
    /// aggregate's snapshot, which holds the same data in clear.
    async fn destroy(&self, aggregate_type: &str, subject: &str) -> Result<(), StoreError> {
        match self {
            Vault::Postgres(p) => {
                let mut tx = p.begin().await.map_err(db)?;
                sqlx::query(
                    "INSERT INTO personal_data_keys (subject_id, key_bytes, erased_at) VALUES ($1, NULL, now()) \
                     ON CONFLICT (subject_id) DO UPDATE SET key_bytes = NULL, erased_at = coalesce(personal_data_keys.erased_at, now())",
                )
                .bind(subject)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                sqlx::query(
                    "DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2",
                )
                .bind(aggregate_type)
                .bind(subject)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
            }
            Vault::Sqlite { writer, .. } => {
                let mut tx = writer.begin().await.map_err(db)?;
                sqlx::query(
                    "INSERT INTO personal_data_keys (subject_id, key_bytes, erased_at) VALUES (?1, NULL, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
                     ON CONFLICT (subject_id) DO UPDATE SET key_bytes = NULL, erased_at = coalesce(erased_at, excluded.erased_at)",
                )
                .bind(subject)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                sqlx::query(
                    "DELETE FROM snapshots WHERE aggregate_type = ?1 AND aggregate_id = ?2",
                )
                .bind(aggregate_type)
                .bind(subject)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
            }
        }
        Ok(())
    }
}

/// The body of an externally tagged payload (`{"EventType": {…}}`).
fn body_mut<'p>(
    payload: &'p mut Value,
    event_type: &str,
) -> Option<&'p mut serde_json::Map<String, Value>> {
    payload.get_mut(event_type).and_then(Value::as_object_mut)
}

fn subject_of(
    f: &PersonalField,
    aggregate_id: &str,
    payload: &Value,
    event_type: &str,
) -> Option<String> {
    match f.subject {
        Subject::AggregateId => Some(aggregate_id.to_string()),
        Subject::Field(name) => payload
            .get(event_type)
            .and_then(|b| b.get(name))
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

fn aad(f: &PersonalField, subject: &str) -> String {
    format!(
        "{}/{}/{}/{subject}",
        f.aggregate_type, f.event_type, f.field
    )
}

fn cipher(key: &[u8]) -> Result<LessSafeKey, StoreError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| StoreError::Database("a personal-data key has the wrong length".into()))
}

fn encrypt(key: &[u8], aad: &str, value: &Value) -> Result<Value, StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| StoreError::Database("no randomness for a nonce".into()))?;
    let mut data = serde_json::to_vec(value).map_err(|e| StoreError::Database(e.to_string()))?;
    cipher(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut data,
        )
        .map_err(|_| StoreError::Database("encryption failed".into()))?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&data);
    Ok(serde_json::json!({ SEALED: base64::engine::general_purpose::STANDARD.encode(sealed) }))
}

fn decrypt(key: &[u8], aad: &str, sealed: &str) -> Option<Value> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .ok()?;
    if raw.len() < NONCE_LEN {
        return None;
    }
    let (nonce, data) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = cipher(key)
        .ok()?
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
        .ok()?;
    serde_json::from_slice(plain).ok()
}

/// The sealed text of a field, if it is encrypted.
fn sealed_text(v: &Value) -> Option<&str> {
    v.as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get(SEALED))
        .and_then(Value::as_str)
}

/// Encrypts the personal fields of an append; destroys the key first when the
/// append erases its subject.
///
/// # Errors
/// [`StoreError`] when the key store fails (nothing is appended then).
pub async fn seal(log: &EventLog, mut req: AppendRequest) -> Result<AppendRequest, StoreError> {
    let agg = req.aggregate_type.clone();
    if !domain::personal_data::holds_personal_data(&agg) {
        return Ok(req);
    }
    // A snapshot of such an aggregate (its post-command state) would hold the
    // data in clear. `Crm` takes none; this guards any other writer.
    req.snapshot = None;
    let vault = Vault::of(log);
    if req
        .events
        .iter()
        .any(|e| (agg.as_str(), e.event_type.as_str()) == ERASURE_EVENT)
    {
        vault.destroy(&agg, &req.aggregate_id).await?;
    }
    let mut subjects: Vec<String> = Vec::new();
    for e in &req.events {
        for f in personal_fields(&agg, &e.event_type) {
            if let Some(s) = subject_of(f, &req.aggregate_id, &e.payload, &e.event_type) {
                if !subjects.contains(&s) {
                    subjects.push(s);
                }
            }
        }
    }
    if subjects.is_empty() {
        return Ok(req);
    }
    let keys = vault.keys_for_writing(&subjects).await?;
    for e in &mut req.events {
        let fields: Vec<&PersonalField> = personal_fields(&agg, &e.event_type).collect();
        let subjects: Vec<Option<String>> = fields
            .iter()
            .map(|f| subject_of(f, &req.aggregate_id, &e.payload, &e.event_type))
            .collect();
        let Some(body) = body_mut(&mut e.payload, &e.event_type) else {
            continue;
        };
        for (f, subject) in fields.iter().zip(subjects) {
            let Some(subject) = subject else { continue };
            let Some(value) = body.get(f.field) else {
                continue;
            };
            if value.is_null() || sealed_text(value).is_some() {
                continue;
            }
            let replacement = match keys.get(&subject) {
                Some(KeyState::Live(key)) => encrypt(key, &aad(f, &subject), value)?,
                // Personal data of an erased subject is never stored readable.
                Some(KeyState::Erased) | None => f.erased.value(),
            };
            body.insert(f.field.to_string(), replacement);
        }
    }
    Ok(req)
}

/// Decrypts the personal fields of events read from the log; an erased
/// subject's fields read as their placeholders.
///
/// # Errors
/// [`StoreError`] when the key store fails.
pub async fn open(
    log: &EventLog,
    mut events: Vec<RecordedEvent>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut subjects: HashSet<String> = HashSet::new();
    for e in &events {
        for f in personal_fields(&e.aggregate_type, &e.event_type) {
            if let Some(s) = subject_of(f, &e.aggregate_id, &e.payload, &e.event_type) {
                subjects.insert(s);
            }
        }
    }
    if subjects.is_empty() {
        return Ok(events);
    }
    let subjects: Vec<String> = subjects.into_iter().collect();
    let keys = Vault::of(log).keys(&subjects).await?;
    for e in &mut events {
        let fields: Vec<&PersonalField> =
            personal_fields(&e.aggregate_type, &e.event_type).collect();
        let subjects: Vec<Option<String>> = fields
            .iter()
            .map(|f| subject_of(f, &e.aggregate_id, &e.payload, &e.event_type))
            .collect();
        let Some(body) = body_mut(&mut e.payload, &e.event_type) else {
            continue;
        };
        for (f, subject) in fields.iter().zip(subjects) {
            let Some(subject) = subject else { continue };
            let Some(value) = body.get(f.field) else {
                continue;
            };
            let opened = match (keys.get(&subject), sealed_text(value)) {
                (Some(KeyState::Erased), _) => Some(f.erased.value()),
                (Some(KeyState::Live(key)), Some(sealed)) => {
                    // A ciphertext that does not open (tampered, moved) reads as erased
                    // rather than failing every reader of the log.
                    Some(decrypt(key, &aad(f, &subject), sealed).unwrap_or_else(|| {
                        tracing::warn!(aggregate_id = %e.aggregate_id, event_type = %e.event_type, field = f.field, "personal field does not decrypt");
                        f.erased.value()
                    }))
                }
                (None, Some(_)) => Some(f.erased.value()),
                // Plain text from before encryption existed, subject not erased.
                (_, None) => None,
            };
            if let Some(v) = opened {
                body.insert(f.field.to_string(), v);
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_field_opens_only_with_its_key_and_its_place() {
        let key = [7u8; KEY_LEN];
        let v = serde_json::json!("ana@example.com");
        let sealed = encrypt(&key, "Customer/CustomerCreated/email/c1", &v).expect("sealed");
        let text = sealed_text(&sealed).expect("a sealed field");
        assert!(!text.contains("ana"));
        assert_eq!(
            decrypt(&key, "Customer/CustomerCreated/email/c1", text),
            Some(v)
        );
        assert_eq!(
            decrypt(&[8u8; KEY_LEN], "Customer/CustomerCreated/email/c1", text),
            None
        );
        assert_eq!(
            decrypt(&key, "Customer/CustomerCreated/email/c2", text),
            None
        );
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let key = [7u8; KEY_LEN];
        let v = serde_json::json!("Ana");
        assert_ne!(
            encrypt(&key, "a", &v).expect("sealed"),
            encrypt(&key, "a", &v).expect("sealed")
        );
    }
}
