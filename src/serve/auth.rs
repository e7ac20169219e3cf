//! Who is calling: the token's tenant (bearer, or basic with the token as
//! the password), or everything for a server started without a tokens
//! file (which listens on loopback only).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::api_error::ApiError;
use super::state::AppState;
use crate::doors::tokens::{authorization_token, Access};

/// The caller of a request, resolved from `Authorization: Bearer`.
pub struct Caller(pub Access);

impl Caller {
    /// The tenant an upload of this caller lands under: its own, whatever
    /// the request says; an admin may name one.
    pub fn upload_tenant(&self, asked: Option<&str>, default: &str) -> String {
        match &self.0 {
            Access::Tenant(t) => t.clone(),
            Access::All => asked
                .filter(|t| !t.is_empty())
                .unwrap_or(default)
                .to_string(),
        }
    }

    /// Whether the caller may see a row of `tenant`.
    pub fn sees(&self, tenant: &str) -> bool {
        self.0.tenant().is_none_or(|t| t == tenant)
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let Some(tokens) = &state.tokens else {
            return Ok(Caller(Access::All));
        };
        let unauthorized = |error: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                error,
                "send the header Authorization: Bearer <token>, with a token from the server's tokens file",
            )
        };
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("no bearer token"))?;
        let token = authorization_token(value)
            .ok_or_else(|| unauthorized("the Authorization header is not a bearer token"))?;
        match tokens.access(&token) {
            Some(access) => Ok(Caller(access.clone())),
            None => Err(unauthorized("unknown token")),
        }
    }
}
