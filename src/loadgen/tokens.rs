//! Pre-minted request tokens: every fixture request re-issued under a
//! distinct request id, signed with the node key before the clock starts, and
//! kept as ready-to-send form bodies.

use std::path::Path;

use bytes::Bytes;

use super::LoadError;
use crate::keys::SigningKey;
use crate::protocol::{CallbackRequest, FORM_FIELD};

/// Request lifetime of minted tokens: long enough for any bench run.
const TOKEN_TTL_SECS: u64 = 3_600;

/// Ready-to-send requests; request `i` of a run uses entry `i % len()`.
pub struct Tokens {
    /// `TSS_JWT_MSG=...` form bodies.
    pub bodies: Vec<Bytes>,
    /// The request id inside each body, to check the answer's echo.
    pub request_ids: Vec<String>,
}

impl Tokens {
    pub fn len(&self) -> usize {
        self.bodies.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }
}

/// The requests of every fixture (or bare request file) in `dir`.
pub fn load_requests(dir: &Path) -> Result<Vec<CallbackRequest>, LoadError> {
    let paths = crate::fixture::discover(dir)?;
    let mut out = Vec::with_capacity(paths.len());
    for p in &paths {
        out.push(crate::fixture::load_request(p)?);
    }
    if out.is_empty() {
        return Err(LoadError::NoFixtures(dir.to_owned()));
    }
    Ok(out)
}

/// Mints `count` tokens cycling through `requests`, each with its own
/// request id `bench-<nonce>-<i>`, on all cores.
pub fn mint(
    requests: &[CallbackRequest],
    key: &SigningKey,
    count: usize,
) -> Result<Tokens, LoadError> {
    if requests.is_empty() {
        return Err(LoadError::Sign("no requests to mint".into()));
    }
    let nonce: u32 = rand::random();
    let threads = super::cores().min(count.max(1));
    let per = count.div_ceil(threads);
    let chunks: Vec<Result<Vec<(Bytes, String)>, LoadError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let lo = t * per;
                    let hi = ((t + 1) * per).min(count);
                    (lo..hi)
                        .map(|i| mint_one(requests, key, nonce, i))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(LoadError::Sign("minting thread panicked".into())))
            })
            .collect()
    });
    let mut tokens = Tokens {
        bodies: Vec::with_capacity(count),
        request_ids: Vec::with_capacity(count),
    };
    for c in chunks {
        for (b, id) in c? {
            tokens.bodies.push(b);
            tokens.request_ids.push(id);
        }
    }
    Ok(tokens)
}

fn mint_one(
    requests: &[CallbackRequest],
    key: &SigningKey,
    nonce: u32,
    i: usize,
) -> Result<(Bytes, String), LoadError> {
    let mut req = requests
        .get(i % requests.len())
        .cloned()
        .ok_or_else(|| LoadError::Sign("no request".into()))?;
    req.request_id = format!("bench-{nonce:08x}-{i}");
    let doc = serde_json::to_vec(&req).map_err(|e| LoadError::Sign(e.to_string()))?;
    let token = crate::token::sign_package(&doc, key, "tss-node", TOKEN_TTL_SECS)
        .map_err(|e| LoadError::Sign(e.to_string()))?;
    let body = serde_urlencoded::to_string([(FORM_FIELD, token.as_str())])
        .map_err(|e| LoadError::Sign(e.to_string()))?;
    Ok((Bytes::from(body), req.request_id))
}
