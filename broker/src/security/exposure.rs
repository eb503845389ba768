//! Safe defaults: a listener reachable from other machines must be protected.
//!
//! A listener bound to a loopback address is reachable only from this machine (the default for
//! all three). One bound to any other address — `0.0.0.0`, a LAN address — is refused at start
//! unless it serves TLS and the broker requires authentication, or the operator said
//! `--insecure` (`insecure = true`, `EDDY_INSECURE=true`): exposing an open broker must be a
//! decision, never an accident. The check runs on the configuration, before anything binds.

use std::net::SocketAddr;

/// One listener as the check sees it.
#[derive(Debug, Clone, Copy)]
pub struct Exposed {
    /// `listen`, `kafka_listen` or `http_listen`: the setting that names it.
    pub setting: &'static str,
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
}

/// `Err` naming the first listener reachable from other machines without TLS and
/// authentication, unless `insecure`.
pub fn check(listeners: &[Exposed], authenticated: bool, insecure: bool) -> Result<(), String> {
    if insecure {
        return Ok(());
    }
    for l in listeners.iter().filter(|l| !l.addr.ip().is_loopback()) {
        let missing = match (l.tls, authenticated) {
            (true, true) => continue,
            (false, true) => "TLS is off on it",
            (true, false) => "authentication is off",
            (false, false) => "TLS and authentication are off",
        };
        return Err(format!(
            "{} {} is reachable from other machines, but {missing}: anyone who reaches it could \
             read, write and delete everything. Configure [tls] and [auth] enabled = true \
             (docs/security.md), bind a loopback address, or pass --insecure (insecure = true, \
             EDDY_INSECURE=true) to serve it unprotected anyway",
            l.setting, l.addr
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(setting: &'static str, addr: &str, tls: bool) -> Exposed {
        Exposed { setting, addr: addr.parse().unwrap(), tls }
    }

    #[test]
    fn loopback_is_always_served_and_other_addresses_need_tls_and_authentication() {
        let loopback =
            [at("listen", "127.0.0.1:9750", false), at("http_listen", "[::1]:9751", false)];
        assert_eq!(check(&loopback, false, false), Ok(()));
        let open =
            [at("listen", "127.0.0.1:9750", false), at("kafka_listen", "0.0.0.0:9092", false)];
        let e = check(&open, false, false).unwrap_err();
        assert!(e.starts_with("kafka_listen 0.0.0.0:9092 is reachable from other machines, but TLS and authentication are off"), "{e}");
        assert!(check(&open, true, false).unwrap_err().contains("but TLS is off on it"));
        let tls = [at("listen", "10.0.0.5:9750", true)];
        assert!(check(&tls, false, false).unwrap_err().contains("but authentication is off"));
        assert_eq!(check(&tls, true, false), Ok(()));
        assert_eq!(check(&open, false, true), Ok(()), "--insecure");
    }
}
