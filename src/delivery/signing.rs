//! Standard Webhooks signing: `webhook-signature` over `{id}.{timestamp}.{body}`,
//! one `v1,<base64>` per key (rotation), of a body whole or streamed in parts.

use crate::auth::HmacSha256;
use crate::values::SigningKey;
use base64::Engine as _;
use hmac::Mac;

/// The `webhook-signature` header: `v1,<base64>` per key, space-separated.
pub fn sign(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signer = Signer::new(keys, msg_id, timestamp);
    signer.update(body);
    signer.finish()
}

/// The Standard Webhooks signature of a body that streams by in parts
/// (a large event read from R2): HMAC-SHA256 of `{id}.{timestamp}.{body}`
/// with every key, so nothing holds the whole body.
pub struct Signer {
    macs: Vec<HmacSha256>,
}

impl Signer {
    pub fn new(keys: &[SigningKey], msg_id: &str, timestamp: i64) -> Self {
        let prefix = format!("{msg_id}.{timestamp}.");
        let macs = keys
            .iter()
            .filter_map(|k| {
                let mut mac = HmacSha256::new_from_slice(k.bytes()).ok()?;
                mac.update(prefix.as_bytes());
                Some(mac)
            })
            .collect();
        Signer { macs }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        for mac in &mut self.macs {
            mac.update(chunk);
        }
    }

    /// The `webhook-signature` header.
    pub fn finish(self) -> String {
        self.macs
            .into_iter()
            .map(|m| format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> Vec<SigningKey> {
        crate::values::signing_keys("ORIGIN_SIGNING_SECRET", Some(secret)).unwrap()
    }

    #[test]
    fn signs_the_standard_webhooks_vector() {
        // The Standard Webhooks reference test vector.
        let k = keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = sign(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_streamed_signature_is_the_whole_body_signature() {
        let k = keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_c2Vjb25k");
        let body = br#"{"test": 2432232314}"#;
        let mut s = Signer::new(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330);
        for chunk in body.chunks(3) {
            s.update(chunk);
        }
        assert_eq!(s.finish(), sign(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body));
    }

    #[test]
    fn one_signature_per_rotated_key() {
        let k = keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_c2Vjb25k");
        let sig = sign(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        let parts: Vec<_> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(parts[1].starts_with("v1,") && parts[1] != parts[0]);
    }
}
