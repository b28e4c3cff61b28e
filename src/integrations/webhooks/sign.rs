//! Standard Webhooks signatures: the secret is `whsec_` followed by the
//! base64 of the key; each delivery carries `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 of
//! HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, which any Standard Webhooks
//! library checks.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing key, read from a `whsec_…` secret.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    /// `whsec_` and base64 (standard alphabet, padded) of at least 16 bytes.
    fn from_str(text: &str) -> Result<Self, String> {
        let encoded = text
            .strip_prefix("whsec_")
            .ok_or("a webhook secret starts with `whsec_` (then the key in base64)")?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|e| format!("the part after `whsec_` is not base64: {e}"))?;
        if key.len() < 16 {
            return Err(format!(
                "the key is {} bytes; give at least 16 (e.g. `whsec_$(openssl rand -base64 32)`)",
                key.len()
            ));
        }
        Ok(Self { key })
    }
}

impl Secret {
    /// The `webhook-signature` header's value for message `id` sent at
    /// `timestamp` (Unix seconds) with `body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_specification_example() {
        // The example of the Standard Webhooks specification.
        let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let body = br#"{"test": 2432232314}"#;
        let got = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(got, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn refuses_secrets_without_the_prefix_or_too_short() {
        assert!("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            .parse::<Secret>()
            .is_err());
        assert!("whsec_not base64!".parse::<Secret>().is_err());
        assert!("whsec_AAAA".parse::<Secret>().is_err());
    }
}
