//! The control plane's REST API as the terminal commands (`latch locks`, `latch rules`) use it:
//! where it is, the admin token, and one request at a time with its errors put in words.
//!
//! The token comes from `LATCH_ADMIN_TOKEN`, or from the file `--token-file` (or
//! `LATCH_ADMIN_TOKEN_FILE`) names, so that it never has to appear on a command line, where
//! every user of the machine could read it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use reqwest::header::{AUTHORIZATION, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How long one request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the control plane is and how to sign in to it.
#[derive(Args)]
pub struct Remote {
    /// The control plane's address.
    #[arg(
        long,
        global = true,
        env = "LATCH_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    url: String,
    /// A file holding an admin token (a JWT with one of `control_plane.admin_roles`).
    /// Without it, the token is read from LATCH_ADMIN_TOKEN.
    #[arg(
        long,
        global = true,
        env = "LATCH_ADMIN_TOKEN_FILE",
        value_name = "FILE"
    )]
    token_file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// An answer the API gave.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

/// A connection to one control plane, signed in.
pub struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    pub fn connect(remote: &Remote) -> Result<Api, Vec<String>> {
        let base = remote.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(vec![format!(
                "--url {base}: give the control plane's address with http:// or https://"
            )]);
        }
        let token = match &remote.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| vec![format!("reading the token file {}: {e}", path.display())])?,
            None => std::env::var("LATCH_ADMIN_TOKEN").map_err(|_| {
                vec!["no admin token: set LATCH_ADMIN_TOKEN or pass --token-file FILE".to_owned()]
            })?,
        };
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(vec!["the admin token is empty".to_owned()]);
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| vec![format!("an HTTP client: {e}")])?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| vec![format!("a runtime: {e}")])?;
        Ok(Api {
            base,
            token,
            client,
            runtime,
        })
    }

    /// Sends one request; any answer that is not a success becomes an error naming the
    /// request, the status and the problem's detail.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let answer = self.send(method.clone(), path, if_match, body)?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(format!(
                "{method} {path}: {}",
                describe(answer.status, &answer.body)
            ))
        }
    }

    /// Sends one request and returns whatever came back.
    fn send(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method.clone(), &url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(tag) = if_match {
            request = request.header(IF_MATCH, tag);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| format!("{method} {url}: {}", chain(&e)))?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok(Answer { status, body })
        })
    }
}

/// A refusal in one line: the status and, from a problem+json body, its title and detail, and
/// every field error.
fn describe(status: StatusCode, body: &Value) -> String {
    let mut text = status.to_string();
    if let Some(detail) = body["detail"].as_str().or(body["title"].as_str()) {
        text.push_str(": ");
        text.push_str(detail);
    }
    for error in body["errors"].as_array().into_iter().flatten() {
        let field = error["field"].as_str().unwrap_or_default();
        let message = error["message"].as_str().unwrap_or_default();
        text.push_str(&format!("; {field}: {message}"));
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        text.push_str(" (is the token an admin's, and still valid?)");
    }
    text
}

/// An error with its causes, for connection failures ("connection refused" is in a cause).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `value` as one path segment: everything but unreserved characters percent-encoded.
pub fn segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_problem_is_described_with_its_detail_and_field_errors() {
        let body = json!({
            "title": "Unprocessable Entity",
            "detail": "The rule is not valid.",
            "errors": [{ "field": "pattern", "message": "unclosed group" }],
        });
        assert_eq!(
            describe(StatusCode::UNPROCESSABLE_ENTITY, &body),
            "422 Unprocessable Entity: The rule is not valid.; pattern: unclosed group"
        );
        assert_eq!(
            describe(StatusCode::FORBIDDEN, &Value::Null),
            "403 Forbidden (is the token an admin's, and still valid?)"
        );
    }

    #[test]
    fn a_resource_is_one_path_segment() {
        assert_eq!(segment("doc:1"), "doc%3A1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
