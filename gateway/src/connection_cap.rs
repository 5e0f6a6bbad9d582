//! At most so many open connections per client address.
//!
//! One address holding hundreds of idle or trickling connections would starve everyone else of
//! sockets and memory; past the cap its next connection is closed as soon as it is accepted. An
//! IPv6 client usually owns a whole /64, so IPv6 addresses count per /64 prefix, and an
//! IPv4-mapped IPv6 address counts as the IPv4 address it maps.
//!
//! Behind a reverse proxy every client arrives from the proxy's address: raise the cap there.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

// parking_lot: a panic while the table is held leaves no poisoned lock (a guard dropped during
// unwinding would otherwise panic again and abort).
use parking_lot::Mutex;

#[derive(Clone, Debug)]
pub struct ConnectionCap {
    max_per_client: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted connection; its slot is given back when this is dropped.
#[derive(Debug)]
pub struct Admitted {
    client: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnectionCap {
    pub fn new(max_per_client: usize) -> Self {
        Self { max_per_client, open: Arc::default() }
    }

    /// A slot for one more connection from `peer`, or `None` if it already holds the most.
    pub fn admit(&self, peer: IpAddr) -> Option<Admitted> {
        let client = client_of(peer);
        let mut open = self.open.lock();
        let count = open.entry(client).or_default();
        if *count >= self.max_per_client {
            return None;
        }
        *count += 1;
        Some(Admitted { client, open: self.open.clone() })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// The client a connection counts against.
fn client_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_as_the_client_that_owns_them() {
        let table = [
            ("127.0.0.1", "127.0.0.1"),
            ("10.1.2.3", "10.1.2.3"),
            ("::ffff:10.1.2.3", "10.1.2.3"),
            ("2001:db8::1", "2001:db8::"),
            ("2001:db8::ffff:1", "2001:db8::"),
            ("2001:db8:0:0:1:2:3:4", "2001:db8::"),
            ("2001:db8:0:1::1", "2001:db8:0:1::"),
            ("::1", "::"),
        ];
        for (peer, client) in table {
            let peer: IpAddr = peer.parse().unwrap();
            assert_eq!(client_of(peer), client.parse::<IpAddr>().unwrap(), "{peer}");
        }
    }

    #[test]
    fn a_client_at_the_cap_is_refused_until_one_of_its_connections_closes() {
        let cap = ConnectionCap::new(2);
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        let my_neighbour: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        let first = cap.admit(me).unwrap();
        let _second = cap.admit(me).unwrap();
        assert!(cap.admit(me).is_none());
        let _v6 = cap.admit(my_neighbour).unwrap();
        let _v6_again = cap.admit(same_64).unwrap();
        assert!(cap.admit(same_64).is_none(), "a /64 is one client");
        drop(first);
        assert!(cap.admit(me).is_some());
    }

    #[test]
    fn a_client_whose_connections_all_closed_is_forgotten() {
        let cap = ConnectionCap::new(1);
        let admitted = cap.admit("192.0.2.7".parse().unwrap()).unwrap();
        drop(admitted);
        assert!(cap.open.lock().is_empty());
    }
}
