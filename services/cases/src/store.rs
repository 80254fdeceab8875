//! The case store: commands carried out against PostgreSQL, one transaction each.
//!
//! In one transaction: the request id is checked (a retry returns the first
//! result), the case's projection row is locked, the expected version checked, the
//! domain decides the events, and the events are appended to the timeline with
//! their versions, folded into the projection, indexed by contact point, recorded
//! against the request id and put in the outbox for `touchpoint.case.v1`.

use prost::Message as _;
use sqlx::{PgConnection, PgPool, Row as _};
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::envelope::{event_type, instant, new_envelope, timestamp};
use touchpoint_platform::grpc::storage_unavailable;
use touchpoint_platform::outbox::{self, OutboxError, OutgoingEvent};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Case, Channel, ConsentRevoked, ConsentSource, Envelope};
use uuid::Uuid;

use crate::domain::case::{Command, Rejection, apply, contact_keys, decide};
use crate::domain::contact::ContactKey;

/// The `source` of every event this service emits.
pub const SOURCE: &str = "cases";

/// How a command is to be carried out.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// Client request id: a retry with the same id returns the first result.
    pub request_id: Option<String>,
    /// Apply only if the case is at this version.
    pub expected_version: Option<u64>,
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The case.
    pub case_id: String,
    /// Its version after the command.
    pub version: u64,
}

/// A command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The domain refused it.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// `expected_version` did not match.
    #[error("expected version {expected}, the case is at version {current}")]
    VersionConflict {
        /// What the caller expected.
        expected: u64,
        /// Where the case is.
        current: u64,
    },
    /// The request id was used for another case.
    #[error("request_id was already used for a different case")]
    RequestIdReused,
    /// A stored case could not be decoded.
    #[error("stored state of a case is unreadable")]
    Corrupt,
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Reads and writes cases.
#[derive(Debug, Clone)]
pub struct CaseStore {
    pool: PgPool,
    clock: SharedClock,
    topic: String,
}

impl CaseStore {
    /// A store over `pool` publishing to `topic`.
    pub fn new(pool: PgPool, clock: SharedClock, topic: String) -> Self {
        Self { pool, clock, topic }
    }

    /// Carries out `command` on case `case_id`.
    pub async fn execute(
        &self,
        case_id: &str,
        meta: &Meta,
        command: &Command,
    ) -> Result<Outcome, StoreError> {
        let opens = matches!(command, Command::Open(_));
        let attempt = async {
            let mut tx = self.pool.begin().await?;
            if let Some(first) = first_result(&mut tx, meta, case_id, opens).await? {
                return Ok(first);
            }
            let outcome = self
                .apply_command(&mut tx, case_id, meta, command, None)
                .await?;
            tx.commit().await?;
            Ok(outcome)
        };
        match attempt.await {
            // The same request id was carried out concurrently: answer with its result.
            Err(StoreError::Database(error))
                if is_unique_violation(&error) && meta.request_id.is_some() =>
            {
                let mut tx = self.pool.begin().await?;
                first_result(&mut tx, meta, case_id, opens)
                    .await?
                    .ok_or(StoreError::Database(error))
            }
            other => other,
        }
    }

    /// Carries out `command` on case `case_id` inside `tx`; its events are
    /// caused by `cause` when another service's event asked for them.
    pub async fn apply_command(
        &self,
        tx: &mut PgConnection,
        case_id: &str,
        meta: &Meta,
        command: &Command,
        cause: Option<&Envelope>,
    ) -> Result<Outcome, StoreError> {
        let current = load_for_update(tx, case_id).await?;
        let current_version = current.as_ref().map_or(0, |c| c.version);
        if let Some(expected) = meta.expected_version
            && expected != current_version
        {
            return Err(StoreError::VersionConflict {
                expected,
                current: current_version,
            });
        }
        let payloads = decide(current.as_ref(), command)?;
        let now = self.clock.now();
        let at = timestamp(now);
        let contacts_before = current.as_ref().map(contact_keys);
        let mut state = current;
        let mut outgoing = Vec::with_capacity(payloads.len());
        let mut record = |state: Option<Case>, envelope: Envelope| {
            let state = match &envelope.payload {
                Some(payload) => apply(state, case_id, payload, &at, &envelope.causation_id),
                None => state,
            };
            let version = state.as_ref().map_or(0, |c| c.version);
            outgoing.push((version, envelope));
            state
        };
        for payload in payloads {
            state = record(state, new_envelope(case_id, SOURCE, now, payload, cause));
        }
        let Some(mut state) = state else {
            return Err(StoreError::Rejected(Rejection::NotFound));
        };
        let contacts_after = contact_keys(&state);
        if contacts_before.as_ref() != Some(&contacts_after) {
            reindex_contacts(tx, case_id, contacts_before.is_some(), &contacts_after).await?;
            // A number or address that opted out before it came to this case is
            // revoked here from the start, as of its opt-out.
            let added: Vec<&String> = contacts_after
                .iter()
                .filter(|k| !contacts_before.as_ref().is_some_and(|b| b.contains(k)))
                .collect();
            // Read after the contact's lock: a word from it that no case held
            // yet is either committed and read here, or waits for this case to
            // commit and then finds it (`cases_holding`).
            for key in &added {
                lock_contact(tx, key).await?;
            }
            for revoked in opted_out(tx, &added, &state.program_id).await? {
                let mut envelope = new_envelope(case_id, SOURCE, now, revoked.payload, None);
                if let Some(id) = revoked.cause {
                    envelope.causation_id = id.to_string();
                }
                state = record(Some(state), envelope).ok_or(StoreError::Corrupt)?;
            }
        }
        for (version, envelope) in &outgoing {
            append_to_timeline(tx, envelope, Some(*version)).await?;
        }
        sqlx::query(
            "INSERT INTO cases (case_id, version, state) VALUES ($1, $2, $3)
             ON CONFLICT (case_id) DO UPDATE SET version = $2, state = $3, updated_at = now()",
        )
        .bind(case_id)
        .bind(state.version as i64)
        .bind(state.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        if let Some(request_id) = &meta.request_id {
            sqlx::query(
                "INSERT INTO command_requests (request_id, case_id, version) VALUES ($1, $2, $3)",
            )
            .bind(request_id)
            .bind(case_id)
            .bind(state.version as i64)
            .execute(&mut *tx)
            .await?;
        }
        let outgoing: Vec<OutgoingEvent> = outgoing
            .into_iter()
            .map(|(_, envelope)| OutgoingEvent::new(self.topic.clone(), envelope))
            .collect();
        outbox::append(tx, &outgoing).await?;
        Ok(Outcome {
            case_id: case_id.to_owned(),
            version: state.version,
        })
    }

    /// Now, on the service's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// The pool, for the timeline readers.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The current state of a case.
    pub async fn get(&self, case_id: &str) -> Result<Option<Case>, StoreError> {
        let state: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT state FROM cases WHERE case_id = $1")
                .bind(case_id)
                .fetch_optional(&self.pool)
                .await?;
        state
            .map(|bytes| Case::decode(bytes.as_slice()).map_err(|_| StoreError::Corrupt))
            .transpose()
    }

    /// Ids of the cases reachable at `contact`, oldest case first.
    pub async fn find_by_contact(&self, contact: &ContactKey) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT i.case_id FROM contact_index i JOIN cases c USING (case_id)
             WHERE i.contact_key = $1 ORDER BY c.case_id",
        )
        .bind(contact.index_key())
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The result of an earlier command with the same request id, if any. An OpenCase
/// retry arrives with a fresh server-made case id, so only other commands must
/// name the same case as the first time.
async fn first_result(
    tx: &mut PgConnection,
    meta: &Meta,
    case_id: &str,
    opens: bool,
) -> Result<Option<Outcome>, StoreError> {
    let Some(request_id) = &meta.request_id else {
        return Ok(None);
    };
    let row = sqlx::query("SELECT case_id, version FROM command_requests WHERE request_id = $1")
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let first = Outcome {
        case_id: row.try_get("case_id")?,
        version: row.try_get::<i64, _>("version")? as u64,
    };
    if !opens && first.case_id != case_id {
        return Err(StoreError::RequestIdReused);
    }
    Ok(Some(first))
}

async fn load_for_update(tx: &mut PgConnection, case_id: &str) -> Result<Option<Case>, StoreError> {
    let state: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT state FROM cases WHERE case_id = $1 FOR UPDATE")
            .bind(case_id)
            .fetch_optional(&mut *tx)
            .await?;
    state
        .map(|bytes| Case::decode(bytes.as_slice()).map_err(|_| StoreError::Corrupt))
        .transpose()
}

/// Appends one event to the case timeline (`version` for the case's own events).
/// Returns false if the event was already there.
pub async fn append_to_timeline(
    tx: &mut PgConnection,
    envelope: &Envelope,
    version: Option<u64>,
) -> Result<bool, StoreError> {
    let event_id = Uuid::parse_str(&envelope.event_id).map_err(|_| StoreError::Corrupt)?;
    let occurred_at = occurred_at(envelope);
    let inserted = sqlx::query(
        "INSERT INTO timeline (case_id, version, event_id, kind, source, occurred_at, envelope)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&envelope.case_id)
    .bind(version.map(|v| v as i64))
    .bind(event_id)
    .bind(event_type(envelope))
    .bind(&envelope.source)
    .bind(occurred_at)
    .bind(envelope.encode_to_vec())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Appends other services' events to the timeline in one statement, in order;
/// events already there are skipped.
pub async fn append_many_to_timeline(
    tx: &mut PgConnection,
    envelopes: &[&Envelope],
) -> Result<(), StoreError> {
    let mut case_ids = Vec::with_capacity(envelopes.len());
    let mut event_ids = Vec::with_capacity(envelopes.len());
    let mut kinds = Vec::with_capacity(envelopes.len());
    let mut sources = Vec::with_capacity(envelopes.len());
    let mut occurred = Vec::with_capacity(envelopes.len());
    let mut bodies = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        case_ids.push(envelope.case_id.clone());
        event_ids.push(Uuid::parse_str(&envelope.event_id).map_err(|_| StoreError::Corrupt)?);
        kinds.push(event_type(envelope).to_owned());
        sources.push(envelope.source.clone());
        occurred.push(occurred_at(envelope));
        bodies.push(envelope.encode_to_vec());
    }
    sqlx::query(
        "INSERT INTO timeline (case_id, event_id, kind, source, occurred_at, envelope)
         SELECT case_id, event_id, kind, source, occurred_at, envelope
         FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[])
              WITH ORDINALITY AS e(case_id, event_id, kind, source, occurred_at, envelope, n)
         ORDER BY n
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&case_ids)
    .bind(&event_ids)
    .bind(&kinds)
    .bind(&sources)
    .bind(&occurred)
    .bind(&bodies)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The cases that hold the contact point `key` (index form), oldest first.
pub async fn cases_holding(tx: &mut PgConnection, key: &str) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT case_id FROM contact_index WHERE contact_key = $1 ORDER BY case_id",
    )
    .bind(key)
    .fetch_all(&mut *tx)
    .await?)
}

/// Which of `case_ids` exist.
pub async fn existing_cases(
    tx: &mut PgConnection,
    case_ids: &[&str],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let found: Vec<String> =
        sqlx::query_scalar("SELECT case_id FROM cases WHERE case_id = ANY($1)")
            .bind(case_ids)
            .fetch_all(&mut *tx)
            .await?;
    Ok(found.into_iter().collect())
}

/// When the event happened, as its envelope says (now if it does not say).
fn occurred_at(envelope: &Envelope) -> chrono::DateTime<chrono::Utc> {
    envelope
        .occurred_at
        .as_ref()
        .and_then(instant)
        .unwrap_or_else(chrono::Utc::now)
}

/// Replaces the case's contact index entries (`indexed`: it has some already).
async fn reindex_contacts(
    tx: &mut PgConnection,
    case_id: &str,
    indexed: bool,
    keys: &[String],
) -> Result<(), StoreError> {
    if indexed {
        sqlx::query("DELETE FROM contact_index WHERE case_id = $1")
            .bind(case_id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO contact_index (contact_key, case_id) SELECT k, $2 FROM UNNEST($1::text[]) AS k")
        .bind(keys)
        .bind(case_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A revocation a contact point brings with it to a case.
struct Revoked {
    payload: Payload,
    /// The inbound event of its opt-out, when known.
    cause: Option<Uuid>,
}

/// The revocations the contact points `keys` (index form) carry to a case of
/// `program_id`: each one's opt-out of every program or of that one, not since
/// lifted by an opt-in, on each channel.
async fn opted_out(
    tx: &mut PgConnection,
    keys: &[&String],
    program_id: &str,
) -> Result<Vec<Revoked>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT contact_key, channel, max(opted_out_at) AS opted_out_at,
                (array_agg(opt_out_event_id ORDER BY opted_out_at DESC))[1] AS opt_out_event_id,
                (array_agg(program_id ORDER BY opted_out_at DESC))[1] AS program_id
         FROM contact_opt_outs
         WHERE contact_key = ANY($1) AND program_id IN ('', $2)
         GROUP BY contact_key, channel
         HAVING max(opted_out_at) > max(opted_in_at)
         ORDER BY contact_key, channel",
    )
    .bind(keys)
    .bind(program_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut revoked = Vec::with_capacity(rows.len());
    for row in rows {
        let key: String = row.try_get("contact_key")?;
        let channel: i32 = row.try_get("channel")?;
        let at: chrono::DateTime<chrono::Utc> = row.try_get("opted_out_at")?;
        let Ok(channel) = Channel::try_from(channel) else {
            return Err(StoreError::Corrupt);
        };
        let Some(point) = ContactKey::parse_index_key(&key).map(|k| k.to_contact_point(channel))
        else {
            return Err(StoreError::Corrupt);
        };
        revoked.push(Revoked {
            payload: Payload::ConsentRevoked(ConsentRevoked {
                channel: channel as i32,
                source: consent_source(channel) as i32,
                recorded_by: WORD_RECORDED_BY.to_owned(),
                revoked_at: Some(timestamp(at)),
                contact_point: Some(point),
                program_id: row.try_get("program_id")?,
            }),
            cause: row.try_get("opt_out_event_id")?,
        });
    }
    Ok(revoked)
}

/// Who records a consent change the patient made by writing or calling in.
pub const WORD_RECORDED_BY: &str = "routing";

/// The source of a consent change the patient made on `channel` itself.
pub fn consent_source(channel: Channel) -> ConsentSource {
    match channel {
        Channel::Sms => ConsentSource::SmsKeyword,
        _ => ConsentSource::PatientRequest,
    }
}

/// Holds the lock of the contact point `key` (index form) until the
/// transaction ends. A case that comes to hold a number and a word from that
/// number which no case held both take it before reading what the other
/// writes, so neither misses the other however their transactions overlap.
/// Advisory locks of two 32-bit keys, the first naming contact points, are a
/// space of their own.
pub async fn lock_contact(tx: &mut PgConnection, key: &str) -> Result<(), StoreError> {
    /// The first key of a contact point's lock.
    const CONTACT_LOCKS: i32 = 0x0C0A;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(CONTACT_LOCKS)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// What a contact point said on `channel` at `at`, for the messages of one
/// program or of every program.
pub struct ContactWordRecord<'a> {
    /// The contact point (index form).
    pub key: &'a str,
    /// The channel.
    pub channel: Channel,
    /// An opt-out (else an opt-in).
    pub opted_out: bool,
    /// When it was said.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The program whose messages it is about; "" for every program's.
    pub program_id: &'a str,
    /// The inbound event it came in.
    pub event_id: Uuid,
}

impl std::fmt::Debug for ContactWordRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The contact point is patient data.
        f.debug_struct("ContactWordRecord")
            .field("channel", &self.channel)
            .field("opted_out", &self.opted_out)
            .field("at", &self.at)
            .field("program_id", &self.program_id)
            .field("event_id", &self.event_id)
            .finish_non_exhaustive()
    }
}

/// Records what a contact point said: an opt-out (with the inbound event it
/// came in) or an opt-in. Later words win, whatever the order they are recorded
/// in. Holds the contact point's lock ([`lock_contact`]) from here to the end
/// of the transaction.
pub async fn record_contact_word(
    tx: &mut PgConnection,
    word: &ContactWordRecord<'_>,
) -> Result<(), StoreError> {
    let query = if word.opted_out {
        "INSERT INTO contact_opt_outs
             (contact_key, channel, program_id, opted_out_at, opt_out_event_id)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (contact_key, channel, program_id) DO UPDATE SET
             opt_out_event_id = CASE WHEN $4 > contact_opt_outs.opted_out_at THEN $5
                                     ELSE contact_opt_outs.opt_out_event_id END,
             opted_out_at = GREATEST(contact_opt_outs.opted_out_at, $4)"
    } else {
        "INSERT INTO contact_opt_outs (contact_key, channel, program_id, opted_in_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (contact_key, channel, program_id) DO UPDATE SET
             opted_in_at = GREATEST(contact_opt_outs.opted_in_at, $4)"
    };
    lock_contact(tx, word.key).await?;
    let mut query = sqlx::query(query)
        .bind(word.key)
        .bind(word.channel as i32)
        .bind(word.program_id)
        .bind(word.at);
    if word.opted_out {
        query = query.bind(word.event_id);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// How a client sees each store error: a storage failure is `UNAVAILABLE`
/// (retry with the same request id), a refusal says why.
impl From<StoreError> for tonic::Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Rejected(Rejection::NotFound) => Self::not_found("case not found"),
            StoreError::Rejected(rejection) => Self::failed_precondition(rejection.to_string()),
            StoreError::VersionConflict { .. } => Self::aborted(error.to_string()),
            StoreError::RequestIdReused => Self::invalid_argument(error.to_string()),
            StoreError::Corrupt | StoreError::Database(_) | StoreError::Outbox(_) => {
                storage_unavailable(&error, "retry with the same request_id")
            }
        }
    }
}
