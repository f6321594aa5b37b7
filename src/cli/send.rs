//! `tss-gate send`: play the TSS Node. Signs a request into a token with the
//! node's private key, posts it as the `TSS_JWT_MSG` form field, verifies the
//! answer with the callback server's public key, prints the decoded answer.
//! Exit 0 APPROVE, 1 REJECT, 2 non-zero status or any failure.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Exit;
use crate::protocol::{Action, CallbackResponse, FORM_FIELD, Status};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Callback URL, e.g. http://127.0.0.1:11020/v2/check
    pub url: String,
    /// A fixture or a bare TSSCallbackRequest JSON file (`-` for stdin).
    pub request: PathBuf,
    /// The TSS Node's private key (signs the request token).
    #[arg(long)]
    pub key: PathBuf,
    /// The callback server's public key (verifies the answer).
    #[arg(long)]
    pub server_key: PathBuf,
    /// `iss` claim of the request token.
    #[arg(long, default_value = "tss-node")]
    pub iss: String,
    /// Request token lifetime in seconds (the node's default is 2 minutes).
    /// A negative value makes a token that expired that long ago, to see
    /// how the server answers a stale or replayed token.
    #[arg(long, default_value_t = 120, allow_negative_numbers = true)]
    pub ttl: i64,
    /// Seconds to wait for the answer before giving up, as the node does.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
    /// Send under a new, unique request_id (the file's id plus a random
    /// suffix), so the server decides afresh with the policy it has now
    /// instead of repeating its answer to an earlier identical request.
    #[arg(long)]
    pub fresh_id: bool,
}

pub fn run(a: SendArgs) -> Exit {
    super::init_cli_logging();
    match send(&a) {
        Ok((resp, answer)) => {
            match serde_json::to_string_pretty(&resp) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: {e}"),
            }
            if let Some(note) = answer_note(answer.as_deref()) {
                eprintln!("{note}");
            }
            match (resp.status, resp.action) {
                (Status::Ok, Some(Action::Approve)) => Exit::Ok,
                (Status::Ok, _) => Exit::Rejected,
                _ => Exit::Failed,
            }
        }
        Err(e) => {
            super::print_error(&e);
            Exit::Failed
        }
    }
}

/// What to tell the person at the terminal about an answer that did not
/// come from evaluating the request now (the server's unsigned
/// `x-tss-gate-answer` header; absent from other callback servers).
fn answer_note(answer: Option<&str>) -> Option<&'static str> {
    match answer {
        Some("repeated") => Some(
            "note: this answer repeats the server's earlier answer to the same request_id and payload \
             (a retry is answered identically, so a policy change since then did not run); \
             send with --fresh-id to have it decided again",
        ),
        Some("id-reused") => Some(
            "note: the server saw this request_id before with a different payload and refuses it; \
             send with --fresh-id to use a new request_id",
        ),
        _ => None,
    }
}

fn send(a: &SendArgs) -> anyhow::Result<(CallbackResponse, Option<String>)> {
    // The request's text as written, repeated keys and all: what a node
    // that produced it would send.
    let (mut doc, mut request) = crate::fixture::load_wire(&a.request)?;
    if a.fresh_id {
        request.request_id = format!("{}-{:016x}", request.request_id, rand::random::<u64>());
        // Re-serialised from the parsed request: a repeated key in the file
        // is not reproduced, which only matters when testing exactly that.
        doc = serde_json::to_vec(&request)?;
        eprintln!("sending as request_id {}", request.request_id);
    }
    let node_key = crate::keys::load_signing_key(&a.key)?;
    let server_key = crate::keys::load_verifying_key("callback-server", &a.server_key)?;
    let token = crate::token::sign_package_for(&doc, &node_key, &a.iss, a.ttl)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (body, answer) = rt.block_on(post_token(
        &a.url,
        &token,
        Duration::from_secs(a.timeout_secs),
    ))?;
    let bytes = crate::token::verify_answer(&body, &server_key)
        .map_err(|e| anyhow::anyhow!("answer does not verify: {e}"))?;
    let resp: CallbackResponse = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("answer is not a TSSCallbackResponse: {e}"))?;
    if resp.request_id != request.request_id && resp.status == Status::Ok {
        anyhow::bail!(
            "answer is for request_id `{}`, not `{}`",
            resp.request_id,
            request.request_id
        );
    }
    Ok((resp, answer))
}

/// Posts a request token as the node does; returns the answer body and the
/// server's unsigned `x-tss-gate-answer` header, if any.
pub async fn post_token(
    url: &str,
    token: &str,
    timeout: Duration,
) -> anyhow::Result<(String, Option<String>)> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let resp = client.post(url).form(&[(FORM_FIELD, token)]).send().await?;
    let status = resp.status();
    let answer = resp
        .headers()
        .get(crate::http::ANSWER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.text().await?;
    if !status.is_success() {
        anyhow::bail!("HTTP {status} from {url}");
    }
    Ok((body, answer))
}
