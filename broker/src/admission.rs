//! Who may hold one of a listener's connections: at most `limits.max_connections` in all, at
//! most `limits.max_connections_per_ip` from one client address, and — once a connection has
//! authenticated — at most `auth.max_connections_per_principal` as one user, so one source
//! cannot take the whole budget and lock every other client out.
//!
//! Each listener (native, Kafka and HTTP) has its own [`Admission`], as it has its own
//! `max_connections`: the budgets are separate. Addresses are compared canonically (an
//! IPv4-mapped IPv6 address counts as its IPv4 address). An [`Admitted`] connection holds its
//! place until it is dropped (its principal's place too, once [`Admitted::authenticated`]
//! took one); the per-address and per-principal tables only hold keys with a connection.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;
use crate::security::Principal;

/// One listener's connection budget.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    per_address: Arc<Mutex<HashMap<IpAddr, u32>>>,
    per_principal: Arc<Mutex<HashMap<Principal, u32>>>,
    max_connections: u32,
    max_per_address: u32,
    max_per_principal: u32,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the broker already has {max} connections")]
    Full { max: u32 },
    #[error("the broker already has {max} connections from {address}")]
    Address { address: IpAddr, max: u32 },
    #[error("{principal} already has {max} connections to this listener")]
    Principal { principal: Principal, max: u32 },
}

/// An admitted connection's place in the budget, given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _address: KeySlot<IpAddr>,
    principal: Option<KeySlot<Principal>>,
    per_principal: Arc<Mutex<HashMap<Principal, u32>>>,
    max_per_principal: u32,
}

/// One connection counted under `key` in `table`, given back when dropped.
#[derive(Debug)]
struct KeySlot<K: Eq + Hash> {
    key: K,
    table: Arc<Mutex<HashMap<K, u32>>>,
}

impl<K: Eq + Hash + Clone> KeySlot<K> {
    /// Counts one more connection under `key`, unless it already has `max`.
    fn take(table: &Arc<Mutex<HashMap<K, u32>>>, key: &K, max: u32) -> Option<KeySlot<K>> {
        let mut counts = table.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(KeySlot { key: key.clone(), table: table.clone() })
    }
}

impl<K: Eq + Hash> Drop for KeySlot<K> {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = table.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.remove(&self.key);
            }
        }
    }
}

impl Admission {
    /// A budget of `limits`, with `max_per_principal` connections per authenticated user.
    pub(crate) fn new(limits: &Limits, max_per_principal: u32) -> Self {
        Self::with_limits(limits.max_connections, limits.max_connections_per_ip, max_per_principal)
    }

    /// A budget of `max_connections` in all, `max_per_address` from one client address and
    /// `max_per_principal` per authenticated user.
    pub fn with_limits(max_connections: u32, max_per_address: u32, max_per_principal: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_connections as usize)),
            per_address: Arc::default(),
            per_principal: Arc::default(),
            max_connections,
            max_per_address,
            max_per_principal,
        }
    }

    /// A place for a connection from `peer`, or why there is none.
    pub fn admit(&self, peer: SocketAddr) -> Result<Admitted, Refusal> {
        let address = peer.ip().to_canonical();
        let address_slot = KeySlot::take(&self.per_address, &address, self.max_per_address)
            .ok_or(Refusal::Address { address, max: self.max_per_address })?;
        // Past this point a refusal drops `address_slot`, which gives its count back.
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full { max: self.max_connections })?;
        Ok(Admitted {
            _slot: slot,
            _address: address_slot,
            principal: None,
            per_principal: self.per_principal.clone(),
            max_per_principal: self.max_per_principal,
        })
    }
}

impl Admitted {
    /// The connection authenticated as `principal`: it takes a place in that principal's share
    /// (giving back the one it held, if it held one), or is refused when the share is full.
    pub fn authenticated(&mut self, principal: &Principal) -> Result<(), Refusal> {
        self.principal = None;
        let max = self.max_per_principal;
        let slot = KeySlot::take(&self.per_principal, principal, max)
            .ok_or_else(|| Refusal::Principal { principal: principal.clone(), max })?;
        self.principal = Some(slot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: u32, per_address: u32) -> Limits {
        Limits { max_connections: total, max_connections_per_ip: per_address, ..Limits::default() }
    }

    #[test]
    fn each_principal_has_its_own_share() {
        let admission = Admission::new(&limits(10, 10), 2);
        let peer: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let (alice, bob) = (Principal::user("alice"), Principal::user("bob"));
        let mut connections: Vec<Admitted> =
            (0..4).map(|_| admission.admit(peer).unwrap()).collect();
        connections[0].authenticated(&alice).unwrap();
        connections[1].authenticated(&alice).unwrap();
        let refused = connections[2].authenticated(&alice).unwrap_err();
        assert_eq!(refused.to_string(), "User:alice already has 2 connections to this listener");
        connections[3].authenticated(&bob).unwrap();
        // A close gives the principal's place back.
        connections.remove(0);
        connections[1].authenticated(&alice).unwrap();
        assert_eq!(admission.per_principal.lock().unwrap().get(&alice), Some(&2));
        drop(connections);
        assert!(admission.per_principal.lock().unwrap().is_empty());
    }

    #[test]
    fn each_address_has_its_own_share_of_the_total() {
        let admission = Admission::new(&limits(5, 2), 5);
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let a_mapped: SocketAddr = "[::ffff:127.0.0.1]:1001".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:1000".parse().unwrap();
        let c: SocketAddr = "127.0.0.3:1000".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a_mapped).unwrap();
        let refused = admission.admit(a).unwrap_err();
        assert!(matches!(refused, Refusal::Address { max: 2, .. }), "{refused}");
        let _b1 = admission.admit(b).unwrap();
        let _b2 = admission.admit(b).unwrap();
        let _c1 = admission.admit(c).unwrap();
        assert_eq!(admission.admit(c).unwrap_err(), Refusal::Full { max: 5 });
        // The refusal for the total gave the address's count back; a close frees both.
        drop(first);
        let _again = admission.admit(c).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::Full { max: 5 });
        assert_eq!(admission.per_address.lock().unwrap().get(&c.ip()), Some(&2));
    }
}
