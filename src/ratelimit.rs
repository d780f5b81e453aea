//! Per-client limits on what a guessed token could be tried against: the
//! console's sign-in and the admin API. Counted by Cloudflare's Rate Limiting
//! binding (`[[ratelimits]]` in wrangler.toml; per Cloudflare location, and
//! approximate), keyed by the client's address: an IPv6 client by its /64, the
//! block one host is given, so an attacker cannot mint a fresh key per request.

use std::net::IpAddr;

/// The two limits, each its own binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `POST /console/session`: sign-in attempts.
    SignIn,
    /// Every admin API request and every other console session call.
    Admin,
}

impl Limit {
    /// The binding's name in wrangler.toml.
    pub fn binding(self) -> &'static str {
        match self {
            Limit::SignIn => "SIGN_IN_RATE_LIMIT",
            Limit::Admin => "ADMIN_RATE_LIMIT",
        }
    }

    /// What is counted, for the refusal's message.
    pub fn what(self) -> &'static str {
        match self {
            Limit::SignIn => "console sign-ins",
            Limit::Admin => "admin requests",
        }
    }

    /// The binding's period (Cloudflare allows 10 or 60 seconds): when to try again.
    pub fn retry_after(self) -> u32 {
        60
    }
}

/// The key a client is counted under: its address (`CF-Connecting-IP`), an IPv6 one by its /64.
/// Without an address (not through Cloudflare's edge), every such request shares one key.
pub fn client_key(limit: Limit, connecting_ip: Option<&str>) -> String {
    let client = match connecting_ip.map(str::trim).and_then(|ip| ip.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_string(),
    };
    format!("{}:{client}", limit.binding())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_address_and_an_ipv6_host_by_its_64() {
        assert_eq!(client_key(Limit::SignIn, Some("203.0.113.9")), "SIGN_IN_RATE_LIMIT:203.0.113.9");
        assert_eq!(client_key(Limit::Admin, Some(" 203.0.113.9 ")), "ADMIN_RATE_LIMIT:203.0.113.9");
        let a = client_key(Limit::Admin, Some("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, client_key(Limit::Admin, Some("2001:0db8:0001:0002:ffff:ffff:ffff:ffff")), "one /64, one key");
        assert_eq!(a, "ADMIN_RATE_LIMIT:2001:db8:1:2::/64");
        assert_ne!(a, client_key(Limit::Admin, Some("2001:db8:1:3::1")));
        assert_eq!(client_key(Limit::Admin, Some("::ffff:203.0.113.9")), "ADMIN_RATE_LIMIT:203.0.113.9");
        assert_eq!(client_key(Limit::Admin, None), "ADMIN_RATE_LIMIT:unknown");
        assert_eq!(client_key(Limit::Admin, Some("not an address")), "ADMIN_RATE_LIMIT:unknown");
    }
}
