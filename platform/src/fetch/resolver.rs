//! Name resolution for the guarded client: a name reaches reqwest only as the public addresses
//! it resolved to, so the address a connection goes to is one that was checked.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address::is_public;
use super::error::{NameRefused, Refusal};

pub(super) struct GuardedResolver {
    /// Host names of allowed origins, which may resolve to any address.
    trusted_names: Arc<HashSet<String>>,
}

impl GuardedResolver {
    pub(super) fn new(trusted_names: Arc<HashSet<String>>) -> Self {
        Self { trusted_names }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_owned();
        let trusted = self.trusted_names.contains(&name);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if trusted {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            // Returning the checked addresses, rather than letting reqwest look the name up again,
            // is what defeats DNS rebinding: a second lookup could answer with a private address.
            match keep_public(addrs) {
                Ok(public) => Ok(Box::new(public.into_iter()) as Addrs),
                Err(reason) => Err(NameRefused { name, reason }.into()),
            }
        })
    }
}

/// The public addresses among `addrs`, or why there is none.
fn keep_public(addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
    let Some(first) = addrs.first().copied() else {
        return Err(Refusal::Unresolvable);
    };
    let public: Vec<SocketAddr> = addrs.into_iter().filter(|addr| is_public(addr.ip())).collect();
    if public.is_empty() {
        return Err(Refusal::Address(first.ip()));
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|addr| addr.parse().unwrap()).collect()
    }

    #[test]
    fn a_name_with_public_and_private_addresses_reaches_only_the_public_ones() {
        let resolved = addrs(&["10.0.0.7:0", "93.184.215.14:0", "[::1]:0", "[2606:4700::1]:0"]);
        assert_eq!(keep_public(resolved), Ok(addrs(&["93.184.215.14:0", "[2606:4700::1]:0"])));
    }

    #[test]
    fn a_name_with_only_private_addresses_is_refused_for_the_first_of_them() {
        let resolved = addrs(&["127.0.0.1:0", "[::1]:0"]);
        assert_eq!(keep_public(resolved), Err(Refusal::Address("127.0.0.1".parse().unwrap())));
        assert_eq!(keep_public(Vec::new()), Err(Refusal::Unresolvable));
    }

    #[tokio::test]
    async fn localhost_is_refused_by_the_resolver() {
        let resolver = GuardedResolver::new(Arc::default());
        let error = resolver.resolve("localhost".parse().unwrap()).await.err().expect("localhost must be refused");
        let refused = error.downcast_ref::<NameRefused>().expect("a refusal, not a lookup failure");
        assert!(matches!(refused.reason, Refusal::Address(ip) if ip.is_loopback()), "{refused}");
    }

    #[tokio::test]
    async fn the_name_of_an_allowed_origin_resolves_to_any_address() {
        let resolver = GuardedResolver::new(Arc::new(HashSet::from(["localhost".to_owned()])));
        let resolved: Vec<SocketAddr> = resolver.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(resolved.iter().all(|addr| addr.ip().is_loopback()) && !resolved.is_empty(), "{resolved:?}");
    }
}
