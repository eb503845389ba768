//! The user registry: each user's SCRAM credentials, in the compacted internal topic `__users`
//! and cached in memory.
//!
//! `__users` (compacted, one partition, fsynced per record) holds one record per user: key =
//! the user name, value = its credentials as JSON (per mechanism: salt, iterations, StoredKey,
//! ServerKey, in base64). Deleting a user writes a tombstone. Opening the broker reads the topic
//! to its end (the last write of a name wins, as after compaction).
//!
//! Invariants:
//! - No password and no salted password is stored or kept, in the topic or in memory: a
//!   credential is its salt, iteration count, StoredKey and ServerKey (RFC 5802). PLAIN is
//!   checked by deriving StoredKey from the password presented and comparing in constant time.
//! - A change is durable in `__users` before it is visible in memory, and changes are written
//!   one at a time in the order they apply, so the cache is always what a restart reads back.
//! - PBKDF2 (credentials from a password, a PLAIN check) runs on blocking threads, at most
//!   half the cores at once ([`Users::kdf_slots`]): a flood of PLAIN guesses waits its turn
//!   instead of taking the async workers (or every core) from the other clients.
//! - An unknown user is answered exactly as a known one with a wrong password, after the same
//!   work: SCRAM gets a decoy salt that is stable per name ([`Users::decoy`]), PLAIN runs
//!   PBKDF2 against the decoy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use eddy_client::sasl::{self, MAX_ITERATIONS, MIN_ITERATIONS, SALT_BYTES, Scram, ScramKeys};
use eddy_protocol::v1::{self, request, response};
use eddy_storage::Log;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::error::BrokerError;
use crate::internal::{append_durable, for_each_record};

/// The internal topic holding the users' credentials.
pub const USERS_TOPIC: &str = "__users";
/// Longest user name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// One mechanism's SCRAM credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub keys: ScramKeys,
}

impl Credential {
    /// A credential for `password` (PBKDF2: `iterations` HMACs; call it on a blocking thread).
    pub fn derive(scram: Scram, password: &[u8], salt: Vec<u8>, iterations: u32) -> Credential {
        let keys = scram.keys(&scram.salted_password(password, &salt, iterations));
        Credential { salt, iterations, keys }
    }

    /// Whether `password` is this credential's (PBKDF2, then a constant-time comparison).
    pub fn matches(&self, scram: Scram, password: &[u8]) -> bool {
        let salted = scram.salted_password(password, &self.salt, self.iterations);
        sasl::constant_time_eq(&scram.keys(&salted).stored_key, &self.keys.stored_key)
    }
}

/// A user's credentials, by mechanism.
type Credentials = BTreeMap<Scram, Credential>;

/// The users of one broker.
pub struct Users {
    log: Arc<Log>,
    users: RwLock<BTreeMap<String, Arc<Credentials>>>,
    /// Held while a change is written and applied: one change at a time, in order.
    writing: Mutex<()>,
    /// Per-process secret behind the decoy credentials of unknown users.
    secret: Vec<u8>,
    /// PBKDF2 computations allowed at once.
    kdf_slots: Arc<Semaphore>,
    /// Bumped by every change (caches of checked passwords compare it).
    generation: AtomicU64,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct StoredCredential {
    salt: String,
    iterations: u32,
    stored_key: String,
    server_key: String,
}

fn encode(credentials: &Credentials) -> Result<Vec<u8>, BrokerError> {
    let stored: BTreeMap<&str, StoredCredential> = credentials
        .iter()
        .map(|(scram, c)| {
            let stored = StoredCredential {
                salt: sasl::b64(&c.salt),
                iterations: c.iterations,
                stored_key: sasl::b64(&c.keys.stored_key),
                server_key: sasl::b64(&c.keys.server_key),
            };
            (scram.mechanism().name(), stored)
        })
        .collect();
    serde_json::to_vec(&stored)
        .map_err(|e| BrokerError::InvalidUser { name: String::new(), reason: e.to_string() })
}

fn decode(value: &[u8]) -> Result<Credentials, String> {
    let stored: BTreeMap<String, StoredCredential> =
        serde_json::from_slice(value).map_err(|e| e.to_string())?;
    let mut out = Credentials::new();
    for (name, c) in stored {
        let scram = sasl::Mechanism::from_name(&name)
            .and_then(sasl::Mechanism::scram)
            .ok_or_else(|| format!("unknown mechanism {name:?}"))?;
        let bytes = |field: &str, text: &str| {
            sasl::unb64(text).ok_or_else(|| format!("{name} {field} is not base64"))
        };
        let keys = ScramKeys {
            stored_key: bytes("stored_key", &c.stored_key)?,
            server_key: bytes("server_key", &c.server_key)?,
        };
        out.insert(
            scram,
            Credential { salt: bytes("salt", &c.salt)?, iterations: c.iterations, keys },
        );
    }
    Ok(out)
}

fn invalid(name: &str, reason: impl Into<String>) -> BrokerError {
    BrokerError::InvalidUser { name: name.to_string(), reason: reason.into() }
}

/// A user name: 1 to 255 bytes of UTF-8 without control characters.
pub fn check_name(name: &str) -> Result<(), BrokerError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(invalid(name, format!("a name is 1 to {MAX_NAME_BYTES} bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(name, "a name has no control characters"));
    }
    Ok(())
}

fn check_password(name: &str, password: &str) -> Result<(), BrokerError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(name, format!("a password is 1 to {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(())
}

fn check_iterations(name: &str, iterations: u32) -> Result<(), BrokerError> {
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(invalid(
            name,
            format!("iterations must be {MIN_ITERATIONS} to {MAX_ITERATIONS}, not {iterations}"),
        ));
    }
    Ok(())
}

fn info(name: &str, credentials: &Credentials) -> v1::UserInfo {
    v1::UserInfo {
        name: name.to_string(),
        credentials: credentials
            .iter()
            .map(|(scram, c)| v1::ScramCredentialInfo {
                mechanism: scram.mechanism().name().to_string(),
                iterations: c.iterations,
            })
            .collect(),
    }
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BrokerError::TaskFailed { reason: e.to_string() })?
}

impl Users {
    /// Reads `__users` (partition 0 is `log`) into memory.
    pub fn open(log: Arc<Log>) -> Result<Users, BrokerError> {
        let mut users = BTreeMap::new();
        for_each_record(&log, USERS_TOPIC, |offset, key, value| {
            let name = String::from_utf8_lossy(key.unwrap_or_default()).into_owned();
            match value.map(decode) {
                Some(Ok(credentials)) => drop(users.insert(name, Arc::new(credentials))),
                Some(Err(e)) => {
                    tracing::error!(user = %name, offset, error = %e, "unreadable user record: skipped")
                }
                None => drop(users.remove(&name)),
            }
        })?;
        let secret = sasl::random_bytes(32).map_err(|e| BrokerError::TaskFailed {
            reason: format!("no random numbers for the user registry: {e}"),
        })?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        tracing::info!(users = users.len(), "users loaded");
        Ok(Users {
            log,
            users: RwLock::new(users),
            writing: Mutex::new(()),
            secret,
            kdf_slots: Arc::new(Semaphore::new((cores / 2).max(1))),
            generation: AtomicU64::new(0),
        })
    }

    /// Changes so far (a cache of checked passwords is good while this is unchanged).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn get(&self, name: &str) -> Option<Arc<Credentials>> {
        self.users.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// `name`'s credential for `scram`, if it has one.
    pub fn credential(&self, name: &str, scram: Scram) -> Option<Credential> {
        self.get(name)?.get(&scram).cloned()
    }

    /// A credential for a user that does not exist: stable per name (a prober sees the same
    /// salt each time, as for a real user) and matched by no password.
    pub fn decoy(&self, name: &str, scram: Scram) -> Credential {
        let seed = Scram::Sha512.hmac(&self.secret, &[b"decoy ", name.as_bytes()]);
        let salt = seed[..SALT_BYTES].to_vec();
        let keys = scram.keys(&Scram::Sha512.hmac(&self.secret, &[b"keys ", name.as_bytes()]));
        Credential { salt, iterations: MIN_ITERATIONS, keys }
    }

    /// Whether `password` is `name`'s (PLAIN), checked against one of its SCRAM credentials
    /// on a blocking thread when a PBKDF2 slot is free. An unknown user costs the same work.
    pub async fn check_password(&self, name: &str, password: &[u8]) -> bool {
        let known = self.get(name).and_then(|c| c.iter().next().map(|(s, c)| (*s, c.clone())));
        let (scram, credential) =
            known.clone().unwrap_or_else(|| (Scram::Sha256, self.decoy(name, Scram::Sha256)));
        let Ok(slot) = self.kdf_slots.clone().acquire_owned().await else { return false };
        let password = password.to_vec();
        let matched = tokio::task::spawn_blocking(move || {
            let matched = credential.matches(scram, &password);
            drop(slot);
            matched
        })
        .await;
        known.is_some() && matched.unwrap_or(false)
    }

    /// Credentials for `password` with fresh salts, one per mechanism, on a blocking thread
    /// when a PBKDF2 slot is free.
    async fn derive(
        &self,
        password: &str,
        mechanisms: Vec<(Scram, u32)>,
    ) -> Result<Credentials, BrokerError> {
        let slot = self
            .kdf_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| BrokerError::TaskFailed { reason: format!("no PBKDF2 slot: {e}") })?;
        let password = password.as_bytes().to_vec();
        blocking(move || {
            let mut out = Credentials::new();
            for (scram, iterations) in mechanisms {
                let salt = sasl::random_bytes(SALT_BYTES)
                    .map_err(|e| BrokerError::TaskFailed { reason: e.to_string() })?;
                out.insert(scram, Credential::derive(scram, &password, salt, iterations));
            }
            drop(slot);
            Ok(out)
        })
        .await
    }

    /// Writes and applies one change to `name`: `change` sees the current credentials and
    /// returns the new ones (`None`: delete). Blocking (an fsync): call on a blocking thread.
    fn apply(
        &self,
        name: &str,
        change: impl FnOnce(Option<&Credentials>) -> Result<Option<Credentials>, BrokerError>,
    ) -> Result<Option<Arc<Credentials>>, BrokerError> {
        let _turn = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.get(name);
        let next = change(current.as_deref())?.map(Arc::new);
        let value = next.as_deref().map(encode).transpose()?;
        append_durable(&self.log, USERS_TOPIC, name.as_bytes(), value.as_deref())?;
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        match &next {
            Some(credentials) => drop(users.insert(name.to_string(), credentials.clone())),
            None => drop(users.remove(name)),
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(next)
    }

    /// Creates `name` with credentials for `password` (`mechanisms` empty: both SCRAMs).
    pub async fn create(
        self: &Arc<Self>,
        name: &str,
        password: &str,
        mechanisms: &[Scram],
        iterations: u32,
    ) -> Result<v1::UserInfo, BrokerError> {
        check_name(name)?;
        check_password(name, password)?;
        let iterations = if iterations == 0 { MIN_ITERATIONS } else { iterations };
        check_iterations(name, iterations)?;
        if self.get(name).is_some() {
            return Err(BrokerError::UserExists(name.to_string()));
        }
        let mechanisms = match mechanisms {
            [] => vec![(Scram::Sha256, iterations), (Scram::Sha512, iterations)],
            some => some.iter().map(|s| (*s, iterations)).collect(),
        };
        let credentials = self.derive(password, mechanisms).await?;
        let (users, owned) = (self.clone(), name.to_string());
        let created = blocking(move || {
            users.apply(&owned, |current| match current {
                Some(_) => Err(BrokerError::UserExists(owned.clone())),
                None => Ok(Some(credentials)),
            })
        })
        .await?;
        tracing::info!(user = %name, "user created");
        Ok(info(name, created.as_deref().unwrap_or(&Credentials::new())))
    }

    /// Replaces `name`'s credentials with ones for `password`, for the same mechanisms.
    pub async fn set_password(
        self: &Arc<Self>,
        name: &str,
        password: &str,
    ) -> Result<v1::UserInfo, BrokerError> {
        check_password(name, password)?;
        let current = self.get(name).ok_or_else(|| BrokerError::UnknownUser(name.to_string()))?;
        let mechanisms = current.iter().map(|(s, c)| (*s, c.iterations)).collect();
        let credentials = self.derive(password, mechanisms).await?;
        let (users, owned) = (self.clone(), name.to_string());
        let changed = blocking(move || {
            users.apply(&owned, |current| match current {
                Some(_) => Ok(Some(credentials)),
                None => Err(BrokerError::UnknownUser(owned.clone())),
            })
        })
        .await?;
        tracing::info!(user = %name, "user password changed");
        Ok(info(name, changed.as_deref().unwrap_or(&Credentials::new())))
    }

    /// Deletes `name`.
    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<(), BrokerError> {
        let (users, owned) = (self.clone(), name.to_string());
        blocking(move || {
            users.apply(&owned, |current| match current {
                Some(_) => Ok(None),
                None => Err(BrokerError::UnknownUser(owned.clone())),
            })
        })
        .await?;
        tracing::info!(user = %name, "user deleted");
        Ok(())
    }

    /// Every user with its mechanisms, sorted by name.
    pub fn list(&self) -> Vec<v1::UserInfo> {
        let users = self.users.read().unwrap_or_else(PoisonError::into_inner);
        users.iter().map(|(name, credentials)| info(name, credentials)).collect()
    }

    /// Creates `name` unless it exists (the bootstrap user); whether it was created.
    pub async fn ensure(self: &Arc<Self>, name: &str, password: &str) -> Result<bool, BrokerError> {
        match self.create(name, password, &[], 0).await {
            Ok(_) => Ok(true),
            Err(BrokerError::UserExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets `name`'s `scram` credential from a salted password a Kafka admin client computed
    /// (AlterUserScramCredentials), creating the user if needed. No PBKDF2 here: two HMACs.
    pub async fn upsert_salted(
        self: &Arc<Self>,
        name: &str,
        scram: Scram,
        salt: Vec<u8>,
        iterations: u32,
        salted_password: &[u8],
    ) -> Result<(), BrokerError> {
        check_name(name)?;
        check_iterations(name, iterations)?;
        if salt.is_empty() || salt.len() > 1024 || salted_password.len() != scram.output_len() {
            return Err(invalid(
                name,
                "a salt of 1 to 1024 bytes and a salted password of the hash's length",
            ));
        }
        let credential = Credential { salt, iterations, keys: scram.keys(salted_password) };
        let (users, owned) = (self.clone(), name.to_string());
        blocking(move || {
            users.apply(&owned, |current| {
                let mut next = current.cloned().unwrap_or_default();
                next.insert(scram, credential);
                Ok(Some(next))
            })
        })
        .await?;
        tracing::info!(user = %name, mechanism = %scram.mechanism(), "SCRAM credential set");
        Ok(())
    }

    /// Removes `name`'s `scram` credential (the user with it, when it was the last one).
    pub async fn delete_scram(
        self: &Arc<Self>,
        name: &str,
        scram: Scram,
    ) -> Result<(), BrokerError> {
        let (users, owned) = (self.clone(), name.to_string());
        blocking(move || {
            users.apply(&owned, |current| {
                let mut next = current.cloned().unwrap_or_default();
                if next.remove(&scram).is_none() {
                    return Err(BrokerError::UnknownUser(owned.clone()));
                }
                Ok((!next.is_empty()).then_some(next))
            })
        })
        .await?;
        tracing::info!(user = %name, mechanism = %scram.mechanism(), "SCRAM credential deleted");
        Ok(())
    }

    /// The native user-management requests.
    pub async fn handle(
        self: &Arc<Self>,
        body: request::Body,
    ) -> Result<response::Body, BrokerError> {
        use request::Body as Rq;
        use response::Body as Rs;
        Ok(match body {
            Rq::CreateUser(r) => {
                let mut mechanisms = Vec::new();
                for name in &r.mechanisms {
                    let scram =
                        name.parse::<sasl::Mechanism>().ok().and_then(sasl::Mechanism::scram);
                    mechanisms.push(scram.ok_or_else(|| {
                        invalid(&r.name, format!("{name:?} is not SCRAM-SHA-256 or SCRAM-SHA-512"))
                    })?);
                }
                let user = self.create(&r.name, &r.password, &mechanisms, r.iterations).await?;
                Rs::CreateUser(v1::CreateUserResponse { user: Some(user) })
            }
            Rq::AlterUser(r) => {
                let user = self.set_password(&r.name, &r.password).await?;
                Rs::AlterUser(v1::AlterUserResponse { user: Some(user) })
            }
            Rq::DeleteUser(r) => {
                self.delete(&r.name).await?;
                Rs::DeleteUser(v1::DeleteUserResponse {})
            }
            Rq::ListUsers(_) => Rs::ListUsers(v1::ListUsersResponse { users: self.list() }),
            _ => return Err(BrokerError::Malformed("a request routed to the wrong service")),
        })
    }
}

#[cfg(test)]
mod tests;
