//! Who may hold one of a listener's connections: at most `limits.max_connections` in all and
//! at most `limits.max_connections_per_ip` from one client address, so one source cannot take
//! the whole budget and lock every other client out.
//!
//! Each listener (native and Kafka) has its own [`Admission`], as it has its own
//! `max_connections`: the two budgets are separate. Addresses are compared canonically (an
//! IPv4-mapped IPv6 address counts as its IPv4 address). An [`Admitted`] connection holds its
//! place until it is dropped; the per-address table only holds addresses with a connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;

/// One listener's connection budget.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    per_address: Arc<Mutex<HashMap<IpAddr, u32>>>,
    max_connections: u32,
    max_per_address: u32,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the broker already has {max} connections")]
    Full { max: u32 },
    #[error("the broker already has {max} connections from {address}")]
    Address { address: IpAddr, max: u32 },
}

/// An admitted connection's place in the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    _slot: OwnedSemaphorePermit,
    _address: AddressSlot,
}

#[derive(Debug)]
struct AddressSlot {
    address: IpAddr,
    table: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = table.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.remove(&self.address);
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections as usize)),
            per_address: Arc::default(),
            max_connections: limits.max_connections,
            max_per_address: limits.max_connections_per_ip,
        }
    }

    /// A place for a connection from `peer`, or why there is none.
    pub(crate) fn admit(&self, peer: SocketAddr) -> Result<Admitted, Refusal> {
        let address = peer.ip().to_canonical();
        let address_slot = {
            let mut table = self.per_address.lock().unwrap_or_else(PoisonError::into_inner);
            let count = table.entry(address).or_insert(0);
            if *count >= self.max_per_address {
                return Err(Refusal::Address { address, max: self.max_per_address });
            }
            *count += 1;
            AddressSlot { address, table: self.per_address.clone() }
        };
        // Past this point a refusal drops `address_slot`, which gives its count back.
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full { max: self.max_connections })?;
        Ok(Admitted { _slot: slot, _address: address_slot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: u32, per_address: u32) -> Limits {
        Limits { max_connections: total, max_connections_per_ip: per_address, ..Limits::default() }
    }

    #[test]
    fn each_address_has_its_own_share_of_the_total() {
        let admission = Admission::new(&limits(5, 2));
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
