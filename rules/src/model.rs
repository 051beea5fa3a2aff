//! The rule model: one admin rule exactly as it is written in a rule file, sent to the
//! control-plane API or stored as a MongoDB document.
//!
//! This module owns the field names and their defaults, which are part of the external
//! contract. It knows nothing about validation or matching: a `Rule` value may be invalid
//! until [`crate::validate_rule`] or [`crate::RuleSet::compile`] has accepted it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One admin rule. Field names are the wire names in TOML, JSON and BSON alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name, `[a-z0-9_-]{1,64}`; the default lock key starts with it.
    pub id: String,
    /// Regex matched against the whole normalized path (anchoring is implicit).
    pub pattern: String,
    /// Lock key template such as `doc:{id}`. `None` means the id followed by every capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// HTTP methods this rule applies to. `None` means every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// What a request gets while someone else holds the lock. Default `block`.
    #[serde(default)]
    pub mode: Mode,
    /// Same-site path template used by `mode = "redirect"`, and only by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_to: Option<String>,
    /// Whether a lock belongs to the user or to one browser tab. Default `user`.
    #[serde(default)]
    pub owner: Owner,
    /// Overrides `[locks] lease_seconds` for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// Overrides `[locks] grace_seconds` for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
    /// Overrides `[locks] idle_seconds` for this rule: a holder with no activity for this long
    /// is warned, then released. `0` turns the idle release off for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_seconds: Option<u64>,
    /// Overrides `[locks] offer_seconds` for this rule: how long a freed resource is reserved
    /// for the person at the head of its wait queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_seconds: Option<u64>,
    /// Overrides `[locks] max_per_user` for claims under this rule: the most distinct live
    /// locks a user may hold once a new claim under it is granted, counting locks of every
    /// rule. `0` means no cap for this rule. Unset means the `[locks]` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_user: Option<u32>,
    /// Roles that may take the lock from its holder. Default `["admin"]`; empty means nobody.
    #[serde(default = "default_takeover_roles")]
    pub takeover_roles: Vec<String>,
    /// Whether the banner script is injected into HTML responses. Default `true`.
    #[serde(default = "default_true")]
    pub inject: bool,
    /// Higher wins when several rules match; ties go to the smaller id. Default 0.
    #[serde(default)]
    pub priority: i32,
    /// Match the path ignoring ASCII case, for apps that do the same. Default `false`.
    #[serde(default)]
    pub case_insensitive: bool,
    /// A disabled rule stays listed but never matches. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Whether a WebSocket upgrade under this rule needs the lock. Default `lock`.
    #[serde(default)]
    pub websocket: WebSocket,
    /// The `[[app]]` this rule applies to, by name. `None`: every app. Whether the name is one
    /// of the configured apps is checked where rules meet the configuration (the control
    /// plane, `latch check`, the proxy's rule loading), since this crate knows no config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// Every field name a rule accepts, in declaration order. Rule files are checked against this
/// list so that every unknown key is reported, not only the first one serde stumbles on.
pub const RULE_FIELDS: &[&str] = &[
    "id",
    "pattern",
    "resource",
    "methods",
    "mode",
    "redirect_to",
    "owner",
    "lease_seconds",
    "grace_seconds",
    "idle_seconds",
    "offer_seconds",
    "max_per_user",
    "takeover_roles",
    "inject",
    "priority",
    "case_insensitive",
    "enabled",
    "websocket",
    "app",
];

impl Rule {
    /// A rule with the given id and pattern and every other field at its default.
    pub fn new(id: impl Into<String>, pattern: impl Into<String>) -> Self {
        Rule {
            id: id.into(),
            pattern: pattern.into(),
            resource: None,
            methods: None,
            mode: Mode::default(),
            redirect_to: None,
            owner: Owner::default(),
            lease_seconds: None,
            grace_seconds: None,
            idle_seconds: None,
            offer_seconds: None,
            max_per_user: None,
            takeover_roles: default_takeover_roles(),
            inject: true,
            priority: 0,
            case_insensitive: false,
            enabled: true,
            websocket: WebSocket::default(),
            app: None,
        }
    }
}

fn default_takeover_roles() -> Vec<String> {
    vec!["admin".to_owned()]
}

fn default_true() -> bool {
    true
}

/// What a request gets when another user holds the lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// 423 Locked.
    #[default]
    Block,
    /// 303 See Other to the rule's `redirect_to`.
    Redirect,
    /// GET and HEAD pass; every other method gets 423.
    ReadOnly,
}

impl Mode {
    /// The wire name, as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Block => "block",
            Mode::Redirect => "redirect",
            Mode::ReadOnly => "read_only",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a lock belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// The lock follows the user across tabs, browsers and devices.
    #[default]
    User,
    /// One browser tab holds the lock; the same user elsewhere may move it.
    Session,
}

impl Owner {
    /// The wire name, as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::User => "user",
            Owner::Session => "session",
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a WebSocket upgrade (the app's own socket) under a rule needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebSocket {
    /// The handshake claims the lock like an unsafe method, and the socket is closed (code
    /// 4423) when its owner loses the lock.
    #[default]
    Lock,
    /// The handshake is treated like any safe request, and the socket is not fenced.
    Pass,
}

impl WebSocket {
    /// The wire name, as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            WebSocket::Lock => "lock",
            WebSocket::Pass => "pass",
        }
    }
}

impl fmt::Display for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
