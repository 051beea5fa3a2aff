//! A real OpenID Provider: panva's `oidc-provider` in `tests/apps/idp`, started with `node` on
//! ports of its own, with the admin port its tests use to rotate its keys, take it down and
//! bring it back, make it answer garbage, and count the key set fetches it saw.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::client;
use crate::node_program::NodeProgram;

/// The machine client `idp.js` registers, and the audience of its access tokens.
pub const CLIENT_ID: &str = "latch-m2m";
pub const CLIENT_SECRET: &str = "latch-m2m-secret";
pub const AUDIENCE: &str = "urn:latch";
/// The browser client (authorization code flow) `idp.js` registers on [`Idp::web_client`].
pub const WEB_CLIENT_ID: &str = "latch-web";
pub const WEB_CLIENT_SECRET: &str = "latch-web-secret";

/// The provider; killed when dropped.
pub struct Idp {
    pub port: u16,
    pub admin_port: u16,
    node: NodeProgram,
}

impl Idp {
    /// Starts the provider on free ports (see [`NodeProgram::start`] for the tries).
    pub fn start() -> Idp {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps/idp");
        assert!(
            dir.join("node_modules/oidc-provider/package.json").exists(),
            "the identity provider's packages are not installed: run `scripts/setup.sh test`"
        );
        let (node, [port, admin_port]) = NodeProgram::start(
            &dir.join("idp.js"),
            "the identity provider",
            |[port, admin_port]| format!("listening {port} {admin_port}"),
        );
        Idp {
            port,
            admin_port,
            node,
        }
    }

    pub fn log(&self) -> String {
        self.node.log()
    }

    /// The provider's issuer identifier (its discovery document says the same).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    /// A JWT access token for the machine client (client_credentials grant).
    pub async fn token(&self) -> String {
        let reply: Value = client()
            .post(format!("{}/token", self.issuer()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", "api"),
            ])
            .send()
            .await
            .expect("the provider answers")
            .json()
            .await
            .expect("a JSON token response");
        reply["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token in {reply}"))
            .to_owned()
    }

    /// `claims` signed with the provider's newest key, as an assertion it issued.
    pub async fn sign(&self, claims: &Value) -> String {
        let reply = self.admin("POST", "/sign", Some(claims)).await;
        reply["token"].as_str().expect("a token").to_owned()
    }

    /// Restarts the provider with a new signing key; `keep` still publishes the old one.
    /// Returns the published kids, newest first.
    pub async fn rotate(&self, keep: bool) -> Vec<String> {
        let path = if keep { "/rotate?keep=1" } else { "/rotate" };
        let reply = self.admin("POST", path, None).await;
        reply["kids"]
            .as_array()
            .expect("kids")
            .iter()
            .map(|kid| kid.as_str().expect("a kid").to_owned())
            .collect()
    }

    /// Stops accepting connections on the provider's port (connections are refused).
    pub async fn down(&self) {
        self.admin("POST", "/down", None).await;
    }

    pub async fn up(&self) {
        self.admin("POST", "/up", None).await;
    }

    /// Makes the key set answer a body that is not JSON (or stops it).
    pub async fn garbage(&self, on: bool) {
        let path = if on { "/garbage?on=1" } else { "/garbage?on=0" };
        self.admin("POST", path, None).await;
    }

    /// The `Cache-Control` the key set is served with.
    pub async fn cache_control(&self, value: &str) {
        self.admin("POST", &format!("/cache?value={value}"), None)
            .await;
    }

    /// Key set requests the provider saw.
    pub async fn jwks_fetches(&self) -> u64 {
        self.admin("GET", "/fetches", None).await["jwks"]
            .as_u64()
            .expect("a count")
    }

    /// Discovery document requests the provider saw.
    pub async fn discovery_fetches(&self) -> u64 {
        self.admin("GET", "/fetches", None).await["discovery"]
            .as_u64()
            .expect("a count")
    }

    /// Registers the browser client with `redirect_uri` as its only callback.
    /// ID tokens issued from now on last `seconds`.
    pub async fn id_token_ttl(&self, seconds: u64) {
        self.admin("POST", &format!("/id-token-ttl?seconds={seconds}"), None)
            .await;
    }

    /// Gives the browser client the refresh_token grant, or takes it away (its refresh tokens
    /// are refused from then on).
    pub async fn allow_refresh(&self, allow: bool) {
        self.admin("POST", &format!("/refresh?allow={}", u8::from(allow)), None)
            .await;
    }

    /// How many refresh_token grants the token endpoint answered.
    pub async fn refreshes(&self) -> u64 {
        self.admin("GET", "/fetches", None).await["refresh"]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn web_client(&self, redirect_uri: &str) {
        self.web_client_for(&[redirect_uri]).await;
    }

    /// Registers the browser client with several callbacks (the proxy's and the console's).
    pub async fn web_client_for(&self, redirect_uris: &[&str]) {
        let body = json!({ "redirect_uris": redirect_uris });
        self.admin("POST", "/web-client", Some(&body)).await;
    }

    /// Makes the token endpoint answer ID tokens with `claims` merged in, re-signed with the
    /// provider's own key (`{}` stops it): a provider that misbehaves, or an attacker who
    /// can swap the token.
    pub async fn id_token_claims(&self, claims: &Value) {
        self.admin("POST", "/id-token-claims", Some(claims)).await;
    }

    async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port);
        let request = match method {
            "GET" => client().get(url),
            _ => client()
                .post(url)
                .body(body.unwrap_or(&json!({})).to_string()),
        };
        let response = request
            .send()
            .await
            .expect("the provider's admin port answers");
        assert!(
            response.status().is_success(),
            "admin {path}: {}",
            response.status()
        );
        response.json().await.expect("JSON")
    }
}
