//! The REST API (recordings, layouts) as a client uses it.

use anyhow::{Result, anyhow};
use serde_json::Value;

/// `http://host:port`
pub struct Api {
    pub base: String,
    client: reqwest::Client,
    /// The API secret, for a server with auth.
    bearer: Option<String>,
}

/// A status and a JSON body.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl Api {
    pub fn new(addr: impl std::fmt::Display) -> Api {
        Api {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            bearer: None,
        }
    }

    /// The API of a server with auth, with its API secret.
    pub fn with_bearer(addr: impl std::fmt::Display, bearer: &str) -> Api {
        Api {
            bearer: Some(bearer.to_owned()),
            ..Api::new(addr)
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.bearer {
            Some(bearer) => request.bearer_auth(bearer),
            None => request,
        }
    }

    async fn reply(response: reqwest::Response) -> Result<Reply> {
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).map_err(|e| anyhow!("not JSON ({e}): {text}"))?;
        Ok(Reply { status, body })
    }

    pub async fn post(&self, path: &str, body: &str) -> Result<Reply> {
        self.with_body(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &str) -> Result<Reply> {
        self.with_body(reqwest::Method::PUT, path, body).await
    }

    async fn with_body(&self, method: reqwest::Method, path: &str, body: &str) -> Result<Reply> {
        let response = self
            .request(method, path)
            .body(body.to_owned())
            .send()
            .await?;
        Self::reply(response).await
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        Self::reply(self.request(reqwest::Method::GET, path).send().await?).await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply> {
        Self::reply(self.request(reqwest::Method::DELETE, path).send().await?).await
    }

    /// Starts a recording; panics unless it answers 201.
    pub async fn start(&self, room: &str, format: &str) -> Value {
        let body = format!(r#"{{"format":"{format}"}}"#);
        let reply = self
            .post(&format!("/api/rooms/{room}/recordings"), &body)
            .await
            .expect("POST recordings");
        assert_eq!(reply.status, 201, "start {format}: {}", reply.body);
        reply.body
    }

    /// Stops a recording; returns its final state once the file is complete.
    pub async fn stop(&self, room: &str, id: &str) -> Value {
        let reply = self
            .delete(&format!("/api/rooms/{room}/recordings/{id}"))
            .await
            .expect("DELETE recording");
        assert_eq!(reply.status, 200, "stop {id}: {}", reply.body);
        reply.body
    }

    pub async fn show(&self, room: &str, id: &str) -> Result<Value> {
        let reply = self
            .get(&format!("/api/rooms/{room}/recordings/{id}"))
            .await?;
        if reply.status != 200 {
            return Err(anyhow!("GET {id}: {} {}", reply.status, reply.body));
        }
        Ok(reply.body)
    }
}
