//! Which address a request comes from, for the per-address limits. A
//! request from a trusted reverse proxy (`--trusted-proxy`) is from the
//! address the proxy says it forwarded for: the right-most entry of
//! `X-Forwarded-For` that is not itself a trusted proxy (entries further
//! left were written by the client and prove nothing). From anyone else,
//! the header is ignored: a client cannot choose its own address. Pure.

use axum::http::HeaderMap;
use std::net::IpAddr;

pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    // Every X-Forwarded-For header, in order, as one list.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(address) = hop.parse::<IpAddr>() else {
            // Not an address (garbage, or "unknown"): the last hop we can
            // vouch for is the client as far as we know.
            break;
        };
        client = address;
        if !trusted_proxies.contains(&address) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_proxy_says_who_the_client_is() {
        let proxy = ip("10.0.0.1");
        let trusted = [proxy, ip("10.0.0.2")];
        // Not from a proxy: the header is the client's own claim.
        assert_eq!(
            client_address(ip("203.0.113.9"), &headers(&["198.51.100.1"]), &trusted),
            ip("203.0.113.9")
        );
        // From the proxy: the right-most untrusted hop, whatever the client
        // wrote further left.
        assert_eq!(
            client_address(proxy, &headers(&["1.2.3.4, 198.51.100.7"]), &trusted),
            ip("198.51.100.7")
        );
        // Through two trusted proxies, over two headers.
        assert_eq!(
            client_address(
                proxy,
                &headers(&["1.2.3.4, 198.51.100.7", "10.0.0.2"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(proxy, &headers(&["2001:db8::5"]), &trusted),
            ip("2001:db8::5")
        );
        // No header, or garbage in it: the proxy's own address, or the last
        // hop that parsed.
        assert_eq!(client_address(proxy, &headers(&[]), &trusted), proxy);
        assert_eq!(
            client_address(proxy, &headers(&["unknown"]), &trusted),
            proxy
        );
        assert_eq!(
            client_address(proxy, &headers(&["198.51.100.7, junk, 10.0.0.2"]), &trusted),
            ip("10.0.0.2")
        );
        // Without trusted proxies nothing changes.
        assert_eq!(client_address(proxy, &headers(&["1.2.3.4"]), &[]), proxy);
    }
}
