//! `--tokens FILE`: which bearer token belongs to which tenant. Only the
//! tokens' SHA-256 digests are kept in memory, so a token itself is never
//! stored, logged or compared byte by byte.
//!
//! ```toml
//! [[token]]
//! token = "s3cret-a"   # or sha256 = "<hex of the token's SHA-256>"
//! tenant = "acme"      # "*": every tenant (admin)
//! ```

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// One tenant's rows.
    Tenant(String),
    /// Every tenant's rows.
    All,
}

impl Access {
    /// The tenant a caller is held to; `None` for an admin.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Access::Tenant(t) => Some(t),
            Access::All => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    token: Option<String>,
    sha256: Option<String>,
    tenant: String,
}

pub struct Tokens {
    by_digest: HashMap<[u8; 32], Access>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the tokens file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid tokens file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        // The parser's error would quote the line, token included.
        let file: File = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "not a tokens file ({}); each [[token]] has token or sha256, and tenant",
                e.message()
            )
        })?;
        let mut by_digest = HashMap::new();
        for (i, entry) in file.token.into_iter().enumerate() {
            let n = i + 1;
            let digest: [u8; 32] = match (entry.token, entry.sha256) {
                (Some(t), None) if !t.is_empty() => Sha256::digest(t.as_bytes()).into(),
                (None, Some(hex)) => hex::decode(hex.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .with_context(|| format!("token {n}: sha256 is not 64 hex digits"))?,
                _ => bail!("token {n}: give exactly one of token (not empty) or sha256"),
            };
            let access = match entry.tenant.as_str() {
                "*" => Access::All,
                "" => bail!("token {n}: tenant is empty; name one, or \"*\" for every tenant"),
                t => Access::Tenant(t.to_string()),
            };
            if by_digest.insert(digest, access).is_some() {
                bail!("token {n}: the same token is listed twice");
            }
        }
        if by_digest.is_empty() {
            bail!("no [[token]] entries");
        }
        Ok(Self { by_digest })
    }

    /// The access `token` grants, if it is known.
    pub fn access(&self, token: &str) -> Option<&Access> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_digest.get(&digest)
    }
}

/// The token in an `Authorization` value: `Bearer <token>`, or `Basic`
/// with the token as the password (the user name is not checked).
pub fn authorization_token(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    pair.split_once(':')
        .map(|(_, password)| password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_tenants_by_digest() {
        let admin = hex::encode(Sha256::digest(b"root-token"));
        let t = Tokens::parse(&format!(
            "[[token]]\ntoken = \"s3cret-a\"\ntenant = \"acme\"\n[[token]]\nsha256 = \"{admin}\"\ntenant = \"*\"\n"
        ))
        .unwrap();
        assert_eq!(t.access("s3cret-a"), Some(&Access::Tenant("acme".into())));
        assert_eq!(t.access("root-token"), Some(&Access::All));
        assert_eq!(t.access("s3cret-b"), None);
        assert_eq!(t.access(""), None);
    }

    #[test]
    fn bearer_and_basic_carry_the_token() {
        assert_eq!(
            authorization_token("Bearer s3cret").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            authorization_token("bearer  s3cret ").as_deref(),
            Some("s3cret")
        );
        // base64("acme:s3:cret")
        assert_eq!(
            authorization_token("Basic YWNtZTpzMzpjcmV0").as_deref(),
            Some("s3:cret")
        );
        assert_eq!(authorization_token("Basic !!"), None);
        assert_eq!(authorization_token("Digest x"), None);
        assert_eq!(authorization_token("s3cret"), None);
    }

    #[test]
    fn a_bad_file_is_refused_without_echoing_tokens() {
        for bad in [
            "[[token]]\ntoken = \"leaky-secret\"\n",
            "[[token]]\ntoken = \"leaky-secret\"\nsha256 = \"00\"\ntenant = \"a\"\n",
            "[[token]]\ntoken = \"leaky-secret\"\ntenant = \"\"\n",
            "[[token]]\ntoken = \"leaky-secret\"\ntenant = \"a\"\n[[token]]\ntoken = \"leaky-secret\"\ntenant = \"b\"\n",
            "token = leaky-secret",
            "",
        ] {
            let e = format!("{:#}", Tokens::parse(bad).err().unwrap());
            assert!(!e.contains("leaky-secret"), "{e}");
        }
    }
}
