//! One HTTP/1.1 keep-alive connection, as a TSS Node holds to its callback
//! server. A bare hyper client connection per simulated node: no pool, no
//! per-request allocation beyond the request itself, so the generator spends
//! its CPU on as little as possible (it shares the machine with the server).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;

use super::LoadError;

/// Where the requests go: `http://HOST:PORT/PATH` only (the bench measures
/// the server, not TLS).
#[derive(Debug, Clone)]
pub struct Target {
    /// `HOST:PORT`, for connecting and for the `Host` header.
    pub authority: String,
    pub check_path: String,
    pub ping_path: String,
}

impl Target {
    /// Parses the check URL; `/ping` lives beside it at the root.
    pub fn parse(url: &str) -> Result<Self, LoadError> {
        let bad = |reason: &str| LoadError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let auth = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = auth.port_u16().unwrap_or(80);
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") | Some("/") => "/v2/check".to_owned(),
            Some(p) => p.to_owned(),
        };
        Ok(Self {
            authority: format!("{}:{port}", auth.host()),
            check_path: path,
            ping_path: "/ping".to_owned(),
        })
    }
}

/// What one exchange produced.
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

/// A client connection that reconnects when the server closes it.
pub struct Conn {
    target: Target,
    post: Option<SendRequest<Full<Bytes>>>,
    get: Option<SendRequest<Empty<Bytes>>>,
}

impl Conn {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            post: None,
            get: None,
        }
    }

    async fn open(authority: &str) -> Result<TokioIo<tokio::net::TcpStream>, String> {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok(TokioIo::new(stream))
    }

    /// The kept-alive connection in `slot`, reopened when the server closed it.
    async fn connected<'a, B>(
        slot: &'a mut Option<SendRequest<B>>,
        authority: &str,
    ) -> Result<&'a mut SendRequest<B>, String>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if slot.as_ref().is_none_or(|s| s.is_closed()) {
            let io = Self::open(authority).await?;
            let (s, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *slot = Some(s);
        }
        slot.as_mut().ok_or_else(|| "no connection".to_owned())
    }

    /// Posts a form body to the check path.
    pub async fn post(&mut self, body: Bytes) -> Result<Reply, String> {
        let sender = Self::connected(&mut self.post, &self.target.authority).await?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.target.check_path.as_str())
            .header(hyper::header::HOST, self.target.authority.as_str())
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| {
            self.post = None;
            e.to_string()
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// `GET /ping`.
    pub async fn ping(&mut self) -> Result<Reply, String> {
        let sender = Self::connected(&mut self.get, &self.target.authority).await?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let req = Request::builder()
            .method(Method::GET)
            .uri(self.target.ping_path.as_str())
            .header(hyper::header::HOST, self.target.authority.as_str())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| {
            self.get = None;
            e.to_string()
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_check_urls() {
        let t = Target::parse("http://127.0.0.1:11020/v2/check").expect("url");
        assert_eq!(
            (t.authority.as_str(), t.check_path.as_str()),
            ("127.0.0.1:11020", "/v2/check")
        );
        let t = Target::parse("http://localhost").expect("url");
        assert_eq!(
            (t.authority.as_str(), t.check_path.as_str()),
            ("localhost:80", "/v2/check")
        );
        assert!(Target::parse("https://x/v2/check").is_err());
    }
}
