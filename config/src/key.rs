//! What a configuration key is: its declaration ([`Key`]), the kinds of value it may take and
//! how each is checked, and the one generic reading of enum choices ([`Choice`]).
//!
//! A declaration carries everything said about a key: its dotted name, kind, default, range or
//! choices, a one-line doc and the typed setter that stores it in the [`Draft`]. The loader
//! (`raw.rs`) and the reference table (`reference.rs`) read declarations; this module knows no
//! particular key (those are in `keys.rs`).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use crate::Config;

/// The configuration being filled in, key by key.
pub(crate) struct Draft<'a> {
    pub config: Config,
    /// The directory relative file paths resolve against: the config file's.
    pub base: &'a Path,
    /// The three ways to give the verification key. Only one may be given, and a key file is
    /// read only then, so they are kept here and resolved once every key is read.
    pub auth_key: AuthKey,
    /// `[trusted_proxy]` as written; judged once every key is read, since the assertion
    /// header also depends on `[auth]`.
    pub trusted: auth::TrustedProxySettings,
    /// `[oidc]` as written; secrets may come from files, so it is judged once every key is read.
    pub oidc: OidcDraft,
    /// `[tls]` as written; its files are read once every key is read.
    pub tls: TlsDraft,
    /// The `[[app]]` entry being read; the keys of a repeated section fill it in, and the
    /// loader moves it into `config.apps` once its keys are read.
    pub app: crate::AppConfig,
    /// The upstream keys as written; they are judged together, and name files to read.
    pub upstream: crate::upstream::UpstreamDraft,
    /// Each `[[app]]` entry's `upstream` URLs as written, in entry order; judged with the
    /// `[proxy]` upstream settings once every key is read.
    pub app_upstreams: Vec<Vec<String>>,
    /// The `upstream` URLs of the `[[app]]` entry being read.
    pub app_upstream: Vec<String>,
}

#[derive(Default)]
pub(crate) struct TlsDraft {
    pub listen: Option<SocketAddr>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub certificates: Vec<String>,
    pub redirect_listen: Option<SocketAddr>,
    pub hsts: Duration,
    pub reload: Duration,
}

impl<'a> Draft<'a> {
    /// A draft that fills in `config` (the blank shape, from `keys.rs`).
    pub fn new(config: Config, base: &'a Path) -> Draft<'a> {
        Draft {
            config,
            base,
            auth_key: AuthKey::default(),
            trusted: auth::TrustedProxySettings::default(),
            oidc: OidcDraft::default(),
            tls: TlsDraft::default(),
            app: crate::AppConfig::blank(),
            upstream: Default::default(),
            app_upstreams: Vec::new(),
            app_upstream: Vec::new(),
        }
    }
}

/// Sections written as arrays of tables (`[[app]]`), each entry read with the section's keys.
/// They are set only in the file: an environment variable could not say which entry it means.
pub(crate) const REPEATED: &[&str] = &["app"];

#[derive(Default)]
pub(crate) struct OidcDraft {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub scopes: Vec<String>,
    pub auth_params: Vec<(String, String)>,
    pub redirect_url: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub cookie_secret: Option<String>,
    pub cookie_secret_file: Option<String>,
    pub session: Duration,
    pub renew: bool,
}

#[derive(Default)]
pub(crate) struct AuthKey {
    pub secret: Option<String>,
    pub public_key_file: Option<String>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub discover: bool,
    /// How fetched keys are kept (`auth.jwks_*`), used only with `jwks_url` or `discover`.
    pub refetch_interval: Duration,
    pub fetch_timeout: Duration,
    pub min_lifetime: Duration,
    pub max_lifetime: Duration,
}

/// The unit of a duration key, which its name also states (`_seconds`, `_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    Seconds,
    Milliseconds,
}

/// The shape of a key's value, as the file, the environment and the reference table see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Any string; the setter may check it further.
    Text,
    /// A whole number in `min..=max`.
    Integer { min: i64, max: i64 },
    /// A whole number of `unit`s in `min..=max`.
    Duration { unit: Unit, min: i64, max: i64 },
    /// One of a fixed set of strings.
    Choice(Vec<&'static str>),
    /// A socket address such as `127.0.0.1:8080`.
    Address,
    /// A list of strings: a TOML array, or a single string read as a one-element list; in the
    /// environment, comma-separated or in TOML array syntax.
    List,
    /// `true` or `false` (in the environment, the same words).
    Bool,
}

impl Kind {
    /// The word the reference table uses.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Text => "string",
            Kind::Integer { .. } => "integer",
            Kind::Duration {
                unit: Unit::Seconds,
                ..
            } => "seconds",
            Kind::Duration {
                unit: Unit::Milliseconds,
                ..
            } => "milliseconds",
            Kind::Choice(_) => "enum",
            Kind::Address => "address",
            Kind::List => "list of strings",
            Kind::Bool => "boolean",
        }
    }

    /// An environment variable's text as the value this kind expects. Strings are taken
    /// verbatim (a secret or an instance name may look like a number); numbers that do not
    /// parse stay strings, so the key reports them with its own message.
    pub fn read_env(&self, raw: String) -> Result<Value, String> {
        match self {
            Kind::Text | Kind::Choice(_) | Kind::Address => Ok(Value::String(raw)),
            Kind::Integer { .. } | Kind::Duration { .. } => Ok(raw
                .trim()
                .parse::<i64>()
                .map(Value::Integer)
                .unwrap_or(Value::String(raw))),
            Kind::List if raw.trim_start().starts_with('[') => format!("v = {raw}")
                .parse::<Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .ok_or_else(|| format!("{raw:?} is not a TOML list such as [\"a\", \"b\"]")),
            Kind::List => Ok(Value::Array(
                raw.split(',')
                    .map(|item| Value::String(item.trim().to_string()))
                    .collect(),
            )),
            Kind::Bool => Ok(match raw.trim() {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                _ => Value::String(raw),
            }),
        }
    }
}

/// A type a [`Kind::Choice`] key reads into: its spellings and the value each stands for.
pub(crate) trait Choice: Copy + Send + Sync + 'static {
    const CHOICES: &'static [(&'static str, Self)];
}

/// What a key holds when neither the file nor the environment gives it.
pub(crate) enum Fallback {
    /// A value, checked and stored like a given one.
    Value(Value),
    /// A value worked out at load time; `shown` describes it in the reference table.
    Computed {
        shown: &'static str,
        value: fn() -> Value,
    },
    /// Nothing: the key is optional and its field keeps its empty value.
    Unset,
    /// The key must be given; the reason is what it names, as in "required: the URL of ...".
    Required(&'static str),
}

type Apply = Box<dyn Fn(&mut Draft<'_>, Value) -> Result<(), String> + Send + Sync>;

/// One configuration key, declared once.
pub(crate) struct Key {
    pub section: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    pub default: Fallback,
    /// What values a string key accepts beyond being a string, for the reference table.
    pub allowed: Option<&'static str>,
    pub doc: &'static str,
    apply: Apply,
}

impl Key {
    fn new(dotted: &'static str, kind: Kind, apply: Apply) -> Key {
        let (section, name) = dotted
            .split_once('.')
            .unwrap_or_else(|| panic!("a key is declared as section.name, not {dotted:?}"));
        Key {
            section,
            name,
            kind,
            default: Fallback::Unset,
            allowed: None,
            doc: "",
            apply,
        }
    }

    /// A string key that takes any string.
    pub fn text(dotted: &'static str, set: fn(&mut Draft<'_>, String)) -> Key {
        Key::new(
            dotted,
            Kind::Text,
            Box::new(move |d, v| {
                set(d, string(v)?);
                Ok(())
            }),
        )
    }

    /// A string key whose setter may refuse the string with a message.
    pub fn checked_text(
        dotted: &'static str,
        set: fn(&mut Draft<'_>, String) -> Result<(), String>,
    ) -> Key {
        Key::new(dotted, Kind::Text, Box::new(move |d, v| set(d, string(v)?)))
    }

    /// A whole number in `range`.
    pub fn integer(
        dotted: &'static str,
        range: RangeInclusive<i64>,
        set: fn(&mut Draft<'_>, u64),
    ) -> Key {
        let (min, max) = checked_range(dotted, range);
        Key::new(
            dotted,
            Kind::Integer { min, max },
            Box::new(move |d, v| {
                set(d, integer(v, min, max)?);
                Ok(())
            }),
        )
    }

    /// A whole number of seconds in `range`.
    pub fn seconds(
        dotted: &'static str,
        range: RangeInclusive<i64>,
        set: fn(&mut Draft<'_>, Duration),
    ) -> Key {
        Key::duration(dotted, Unit::Seconds, range, set)
    }

    /// A whole number of milliseconds in `range`.
    pub fn millis(
        dotted: &'static str,
        range: RangeInclusive<i64>,
        set: fn(&mut Draft<'_>, Duration),
    ) -> Key {
        Key::duration(dotted, Unit::Milliseconds, range, set)
    }

    fn duration(
        dotted: &'static str,
        unit: Unit,
        range: RangeInclusive<i64>,
        set: fn(&mut Draft<'_>, Duration),
    ) -> Key {
        let (min, max) = checked_range(dotted, range);
        Key::new(
            dotted,
            Kind::Duration { unit, min, max },
            Box::new(move |d, v| {
                let n = integer(v, min, max)?;
                set(
                    d,
                    match unit {
                        Unit::Seconds => Duration::from_secs(n),
                        Unit::Milliseconds => Duration::from_millis(n),
                    },
                );
                Ok(())
            }),
        )
    }

    /// One of `T`'s spellings.
    pub fn choice<T: Choice>(dotted: &'static str, set: fn(&mut Draft<'_>, T)) -> Key {
        let names = T::CHOICES.iter().map(|(name, _)| *name).collect();
        Key::new(
            dotted,
            Kind::Choice(names),
            Box::new(move |d, v| {
                set(d, choose::<T>(&string(v)?)?);
                Ok(())
            }),
        )
    }

    /// A socket address.
    pub fn address(dotted: &'static str, set: fn(&mut Draft<'_>, SocketAddr)) -> Key {
        Key::new(
            dotted,
            Kind::Address,
            Box::new(move |d, v| {
                let s = string(v)?;
                let address = s
                    .parse()
                    .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:8080"))?;
                set(d, address);
                Ok(())
            }),
        )
    }

    /// `true` or `false`.
    pub fn flag(dotted: &'static str, set: fn(&mut Draft<'_>, bool)) -> Key {
        Key::new(
            dotted,
            Kind::Bool,
            Box::new(move |d, v| match v {
                Value::Boolean(b) => {
                    set(d, b);
                    Ok(())
                }
                other => Err(format!(
                    "expected true or false, found {}",
                    other.type_str()
                )),
            }),
        )
    }

    /// A list of strings.
    pub fn list(dotted: &'static str, set: fn(&mut Draft<'_>, Vec<String>)) -> Key {
        Key::new(
            dotted,
            Kind::List,
            Box::new(move |d, v| {
                set(d, strings(v)?);
                Ok(())
            }),
        )
    }

    /// A list of strings whose setter may refuse the list with a message.
    pub fn checked_list(
        dotted: &'static str,
        set: fn(&mut Draft<'_>, Vec<String>) -> Result<(), String>,
    ) -> Key {
        Key::new(
            dotted,
            Kind::List,
            Box::new(move |d, v| set(d, strings(v)?)),
        )
    }

    pub fn default(mut self, value: impl Into<Value>) -> Key {
        self.default = Fallback::Value(value.into());
        self
    }

    pub fn computed(mut self, shown: &'static str, value: fn() -> Value) -> Key {
        self.default = Fallback::Computed { shown, value };
        self
    }

    pub fn required(mut self, what: &'static str) -> Key {
        self.default = Fallback::Required(what);
        self
    }

    pub fn allowed(mut self, allowed: &'static str) -> Key {
        self.allowed = Some(allowed);
        self
    }

    pub fn doc(mut self, doc: &'static str) -> Key {
        self.doc = doc;
        self
    }

    /// Is this a key of each entry of a repeated section (`[[app]]`)?
    pub fn repeated(&self) -> bool {
        REPEATED.contains(&self.section)
    }

    /// `section.name`.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// The environment variable that overrides this key: `LATCH_<SECTION>_<NAME>`.
    pub fn env_var(&self) -> String {
        format!(
            "{}{}_{}",
            crate::ENV_PREFIX,
            self.section.to_ascii_uppercase(),
            self.name.to_ascii_uppercase()
        )
    }

    /// Checks `value` against the key's kind and range, and stores it.
    pub fn apply(&self, draft: &mut Draft<'_>, value: Value) -> Result<(), String> {
        (self.apply)(draft, value)
    }

    /// The value the key takes when not given, if it has one.
    pub fn default_value(&self) -> Option<Value> {
        match &self.default {
            Fallback::Value(value) => Some(value.clone()),
            Fallback::Computed { value, .. } => Some(value()),
            Fallback::Unset | Fallback::Required(_) => None,
        }
    }
}

fn checked_range(dotted: &str, range: RangeInclusive<i64>) -> (i64, i64) {
    let (min, max) = range.into_inner();
    assert!(
        0 <= min && min <= max,
        "{dotted}: a range of whole numbers from 0 up"
    );
    (min, max)
}

fn string(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(format!("expected a string, found {}", other.type_str())),
    }
}

fn integer(value: Value, min: i64, max: i64) -> Result<u64, String> {
    match value {
        // `min` is at least 0 (see `checked_range`), so the number is too.
        Value::Integer(i) if (min..=max).contains(&i) => Ok(i.unsigned_abs()),
        Value::Integer(i) => Err(format!("{i} is out of range {min}..={max}")),
        other => Err(format!("expected an integer, found {}", other.type_str())),
    }
}

fn strings(value: Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                other => Err(format!("expected strings, found {}", other.type_str())),
            })
            .collect(),
        other => Err(format!(
            "expected a list of strings, found {}",
            other.type_str()
        )),
    }
}

/// The value `T` spells `s`, or a message listing every spelling.
pub(crate) fn choose<T: Choice>(s: &str) -> Result<T, String> {
    T::CHOICES
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<String> = T::CHOICES
                .iter()
                .map(|(name, _)| format!("{name:?}"))
                .collect();
            format!("{s:?} is not one of {}", names.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{blank, KEYS};
    use crate::HeaderCase;

    fn draft() -> Draft<'static> {
        Draft::new(blank(), Path::new("/etc/latch"))
    }

    /// Applies `value` to `key` on a blank draft: the message, or what the setter stored as
    /// read back by `read`.
    fn apply<T>(key: &Key, value: Value, read: fn(&Config) -> T) -> Result<T, String> {
        let mut d = draft();
        key.apply(&mut d, value)?;
        Ok(read(&d.config))
    }

    /// What a setter stored, as text.
    type Read = fn(&Config) -> String;

    fn toml(text: &str) -> Value {
        format!("v = {text}")
            .parse::<Table>()
            .unwrap()
            .remove("v")
            .unwrap()
    }

    #[test]
    fn each_kind_checks_its_values() {
        let threads = Key::integer("t.threads", 1..=64, |d, v| {
            d.config.proxy.threads = v as usize
        });
        let lease = Key::seconds("t.lease", 5..=60, |d, v| d.config.locks.lease = v);
        let timeout = Key::millis("t.timeout", 10..=1_000, |d, v| {
            d.config.locks.store_timeout = v
        });
        let case = Key::choice("t.case", |d, v| d.config.proxy.header_case = v);
        let listen = Key::address("t.listen", |d, v| d.config.admin.listen = v);
        let roles = Key::list("t.roles", |d, v| d.config.control_plane.admin_roles = v);
        let cookie = Key::checked_text("t.cookie", |d, v| {
            if v.contains(' ') {
                return Err(format!("{v:?} has a space"));
            }
            d.config.auth.cookie = v;
            Ok(())
        });
        let threads_of = |c: &Config| c.proxy.threads.to_string();
        let lease_of = |c: &Config| format!("{:?}", c.locks.lease);
        let timeout_of = |c: &Config| format!("{:?}", c.locks.store_timeout);
        let case_of = |c: &Config| format!("{:?}", c.proxy.header_case);
        let listen_of = |c: &Config| c.admin.listen.to_string();
        let roles_of = |c: &Config| c.control_plane.admin_roles.join("+");
        let cookie_of = |c: &Config| c.auth.cookie.clone();
        #[rustfmt::skip]
        let cases: &[(&Key, Read, &str, Result<&str, &str>)] = &[
            (&threads, threads_of, "1", Ok("1")),
            (&threads, threads_of, "64", Ok("64")),
            (&threads, threads_of, "0", Err("0 is out of range 1..=64")),
            (&threads, threads_of, "65", Err("65 is out of range 1..=64")),
            (&threads, threads_of, "-1", Err("-1 is out of range 1..=64")),
            (&threads, threads_of, "\"2\"", Err("expected an integer, found string")),
            (&threads, threads_of, "2.5", Err("expected an integer, found float")),
            (&lease, lease_of, "30", Ok("30s")),
            (&lease, lease_of, "4", Err("4 is out of range 5..=60")),
            (&lease, lease_of, "\"30s\"", Err("expected an integer, found string")),
            (&timeout, timeout_of, "250", Ok("250ms")),
            (&timeout, timeout_of, "1001", Err("1001 is out of range 10..=1000")),
            (&case, case_of, "\"preserve\"", Ok("Preserve")),
            (&case, case_of, "\"canonical\"", Ok("Canonical")),
            (&case, case_of, "\"lower\"", Err("\"lower\" is not one of \"canonical\", \"preserve\"")),
            (&case, case_of, "\"Preserve\"", Err("\"Preserve\" is not one of \"canonical\", \"preserve\"")),
            (&case, case_of, "true", Err("expected a string, found boolean")),
            (&listen, listen_of, "\"[::1]:9100\"", Ok("[::1]:9100")),
            (&listen, listen_of, "\"localhost\"", Err("\"localhost\" is not an address like 127.0.0.1:8080")),
            (&listen, listen_of, "9100", Err("expected a string, found integer")),
            (&roles, roles_of, "[\"a\", \"b\"]", Ok("a+b")),
            (&roles, roles_of, "\"a\"", Ok("a")),
            (&roles, roles_of, "[]", Ok("")),
            (&roles, roles_of, "[\"a\", 1]", Err("expected strings, found integer")),
            (&roles, roles_of, "1", Err("expected a list of strings, found integer")),
            (&cookie, cookie_of, "\"sid\"", Ok("sid")),
            (&cookie, cookie_of, "\"s d\"", Err("\"s d\" has a space")),
            (&cookie, cookie_of, "[\"sid\"]", Err("expected a string, found array")),
        ];
        for (key, read, value, expected) in cases {
            let got = apply(key, toml(value), *read);
            let expected = expected.map(str::to_string).map_err(str::to_string);
            assert_eq!(got, expected, "{} = {value}", key.dotted());
        }
        assert_eq!(
            apply(&case, toml("\"preserve\""), |c| c.proxy.header_case),
            Ok(HeaderCase::Preserve)
        );
    }

    #[test]
    fn environment_text_takes_the_kind_of_its_key() {
        let text = Kind::Text;
        let integer = Kind::Integer { min: 0, max: 9 };
        let seconds = Kind::Duration {
            unit: Unit::Seconds,
            min: 0,
            max: 9,
        };
        let choice = Kind::Choice(vec!["a", "b"]);
        let list = Kind::List;
        let cases: &[(&Kind, &str, Result<&str, &str>)] = &[
            (&text, "1", Ok("\"1\"")),
            (&text, "true", Ok("\"true\"")),
            (&text, "[\"x\"]", Ok("'[\"x\"]'")),
            (&choice, "a", Ok("\"a\"")),
            (&Kind::Address, "127.0.0.1:1", Ok("\"127.0.0.1:1\"")),
            (&integer, "4", Ok("4")),
            (&integer, " 4 ", Ok("4")),
            (&integer, "-4", Ok("-4")),
            (&integer, "four", Ok("\"four\"")),
            (&integer, "", Ok("\"\"")),
            (&seconds, "30", Ok("30")),
            (&seconds, "30s", Ok("\"30s\"")),
            (&list, "a, b", Ok("[\"a\", \"b\"]")),
            (&list, "a", Ok("[\"a\"]")),
            (&list, "[\"a\", \"b\"]", Ok("[\"a\", \"b\"]")),
            (&list, "[1]", Ok("[1]")),
            (
                &list,
                "[\"a\"",
                Err("\"[\\\"a\\\"\" is not a TOML list such as [\"a\", \"b\"]"),
            ),
        ];
        for (kind, raw, expected) in cases {
            let got = kind.read_env(raw.to_string()).map(|v| v.to_string());
            let expected = expected.map(str::to_string).map_err(str::to_string);
            assert_eq!(got, expected, "{kind:?} from {raw:?}");
        }
    }

    #[test]
    fn every_declared_default_passes_its_own_key() {
        for key in KEYS.iter() {
            let mut d = draft();
            match (&key.default, key.default_value()) {
                (Fallback::Unset | Fallback::Required(_), None) => {}
                (_, Some(value)) => {
                    let shown = value.to_string();
                    assert_eq!(
                        key.apply(&mut d, value),
                        Ok(()),
                        "{} = {shown}",
                        key.dotted()
                    );
                }
                (_, None) => panic!("{}: a default without a value", key.dotted()),
            }
        }
    }

    #[test]
    fn every_key_has_a_doc_and_its_own_environment_variable() {
        let mut seen = std::collections::HashSet::new();
        for key in KEYS.iter() {
            assert!(!key.doc.is_empty(), "{} has no doc", key.dotted());
            assert!(
                key.doc.ends_with('.') && !key.doc.contains('\n'),
                "{}: one line, one sentence or more",
                key.dotted()
            );
            let var = key.env_var();
            assert_eq!(
                var,
                format!("LATCH_{}", key.dotted().replace('.', "_").to_uppercase())
            );
            assert!(seen.insert(var.clone()), "{var} names two keys");
        }
        assert!(seen.contains("LATCH_CONTROL_PLANE_ADMIN_ROLES"));
    }

    #[test]
    fn choices_are_read_by_one_generic_path() {
        assert_eq!(choose::<crate::Require>("all"), Ok(crate::Require::All));
        assert_eq!(
            choose::<crate::OnStoreError>("maybe"),
            Err("\"maybe\" is not one of \"deny\", \"allow\"".to_string())
        );
        assert_eq!(
            choose::<inject::Placement>("body_end"),
            Ok(inject::Placement::BodyEnd)
        );
        assert_eq!(
            choose::<crate::PathParameters>("reject"),
            Ok(crate::PathParameters::Reject)
        );
    }
}
