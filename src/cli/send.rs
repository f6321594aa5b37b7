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
    #[arg(long, default_value_t = 120)]
    pub ttl: u64,
    /// The node's request timeout.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

pub fn run(a: SendArgs) -> Exit {
    super::init_cli_logging();
    match send(&a) {
        Ok(resp) => {
            match serde_json::to_string_pretty(&resp) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: {e}"),
            }
            match (resp.status, resp.action) {
                (Status::Ok, Some(Action::Approve)) => Exit::Ok,
                (Status::Ok, _) => Exit::One,
                _ => Exit::Two,
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Two
        }
    }
}

fn send(a: &SendArgs) -> anyhow::Result<CallbackResponse> {
    // The request's text as written, repeated keys and all: what a node
    // that produced it would send.
    let (doc, request) = crate::fixture::load_wire(&a.request)?;
    let node_key = crate::keys::load_signing_key(&a.key)?;
    let server_key = crate::keys::load_verifying_key("callback-server", &a.server_key)?;
    let token = crate::token::sign_package(&doc, &node_key, &a.iss, a.ttl)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = rt.block_on(post_token(
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
    Ok(resp)
}

/// Posts a request token as the node does and returns the answer body.
pub async fn post_token(url: &str, token: &str, timeout: Duration) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let resp = client.post(url).form(&[(FORM_FIELD, token)]).send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        anyhow::bail!("HTTP {status} from {url}");
    }
    Ok(body)
}
