//! Request shapes: a path with its object ids folded into typed placeholders, so that
//! `/admin/pages/3/edit/` and `/admin/pages/41/edit/` are one shape,
//! `/admin/pages/{int}/edit/`, and a rule can be suggested from it.
//!
//! A shape keeps nothing that could identify a request beyond its route: ids, uuids, dates,
//! hashes, long tokens and anything with an `@` become placeholders, and a shape is bounded in length however long
//! the path, so a summary of shapes stays small under hostile traffic.

use std::collections::HashMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// Most segments a shape keeps; the rest of a longer path becomes one `{rest}`.
pub const MAX_SEGMENTS: usize = 16;
/// Longest literal segment a shape keeps, in bytes; a longer one becomes `{str}`.
pub const MAX_LITERAL: usize = 48;
/// Longest shape [`shape`] returns, in bytes (every segment at its longest, escaped).
pub const MAX_SHAPE_LEN: usize = (MAX_SEGMENTS + 1) * (MAX_LITERAL * 3 + 1) + "{rest}".len();

/// The placeholders a segment can fold to, as they appear in a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fold {
    Int,
    Uuid,
    Date,
    Hash,
    Token,
    Str,
}

impl Fold {
    fn placeholder(self) -> &'static str {
        match self {
            Fold::Int => "{int}",
            Fold::Uuid => "{uuid}",
            Fold::Date => "{date}",
            Fold::Hash => "{hash}",
            Fold::Token => "{token}",
            Fold::Str => "{str}",
        }
    }

    fn from_placeholder(segment: &str) -> Option<Fold> {
        Some(match segment {
            "{int}" => Fold::Int,
            "{uuid}" => Fold::Uuid,
            "{date}" => Fold::Date,
            "{hash}" => Fold::Hash,
            "{token}" => Fold::Token,
            "{str}" | "{rest}" => Fold::Str,
            _ => return None,
        })
    }
}

/// The shape of a normalized path (as rules see it, without the query).
pub fn shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len().min(MAX_SHAPE_LEN));
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
    for (i, segment) in segments.by_ref().enumerate() {
        out.push('/');
        if i == MAX_SEGMENTS {
            out.push_str("{rest}");
            return out;
        }
        match fold(segment) {
            Some(f) => out.push_str(f.placeholder()),
            None => escape_into(&mut out, segment),
        }
    }
    out
}

/// What a segment folds to, if it is not kept as written.
fn fold(segment: &str) -> Option<Fold> {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return Some(Fold::Int);
    }
    if is_uuid(bytes) {
        return Some(Fold::Uuid);
    }
    if is_date(bytes) {
        return Some(Fold::Date);
    }
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if bytes.len() >= 16 && digits > 0 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return Some(Fold::Hash);
    }
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    let token_chars = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if bytes.len() >= 20 && token_chars && digits >= 3 && letters >= 3 {
        return Some(Fold::Token);
    }
    // An address is someone's identity, whatever its length.
    (bytes.len() > MAX_LITERAL || bytes.contains(&b'@')).then_some(Fold::Str)
}

/// 32 hex digits, with or without the hyphens of the 8-4-4-4-12 form.
fn is_uuid(bytes: &[u8]) -> bool {
    match bytes.len() {
        32 => bytes.iter().all(u8::is_ascii_hexdigit),
        36 => bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

/// `YYYY-MM-DD`.
fn is_date(bytes: &[u8]) -> bool {
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// A literal segment, with the braces that would read as a placeholder percent-encoded.
fn escape_into(out: &mut String, segment: &str) {
    for c in segment.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
}

/// A rule pattern and resource for a shape: each placeholder becomes a typed capture
/// (`{id:int}`, `{id:uuid}`, a slug or a plain segment for the others), literal segments match
/// as written, and the resource is named after the last literal segment before the first
/// capture (`/admin/pages/{int}/edit/` gives `/admin/pages/{id:int}/edit/` and `pages:{id}`).
/// A shape with no placeholder gives a resource named after its path.
pub fn suggest_rule(shape: &str) -> (String, String) {
    let mut pattern = String::with_capacity(shape.len() + 16);
    let mut names: Vec<String> = Vec::new();
    let mut noun: Option<&str> = None;
    let mut last_literal: Option<&str> = None;
    for segment in shape.strip_prefix('/').unwrap_or(shape).split('/') {
        pattern.push('/');
        let Some(fold) = Fold::from_placeholder(segment) else {
            let literal = segment.replace("%7B", "{").replace("%7D", "}");
            pattern.push_str(&regex_syntax::escape(&literal));
            if !segment.is_empty() {
                last_literal = Some(segment);
            }
            continue;
        };
        let name = match names.len() {
            0 => "id".to_owned(),
            n => format!("id{}", n + 1),
        };
        if names.is_empty() {
            noun = last_literal;
        }
        let _ = match fold {
            Fold::Int => write!(pattern, "{{{name}:int}}"),
            Fold::Uuid => write!(pattern, "{{{name}:uuid}}"),
            Fold::Hash | Fold::Token => write!(pattern, "{{{name}:slug}}"),
            Fold::Date => write!(pattern, r"(?P<{name}>\d{{4}}-\d{{2}}-\d{{2}})"),
            Fold::Str => write!(pattern, "(?P<{name}>[^/]+)"),
        };
        names.push(name);
    }
    let resource = if names.is_empty() {
        let words: Vec<&str> = shape.split('/').filter(|s| !s.is_empty()).collect();
        match words.is_empty() {
            true => "root".to_owned(),
            false => words.join(":"),
        }
    } else {
        let noun = noun.unwrap_or("object");
        let ids: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
        format!("{noun}:{}", ids.join(":"))
    };
    (pattern, resource)
}

/// The kinds of request a shape can be seen as, in the order a summary lists them.
pub const SHAPE_KINDS: [&str; 4] = ["page", "xhr", "asset", "other"];

/// One shape as a proxy instance publishes it and the control plane merges it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShapeEntry {
    pub method: String,
    /// The normalized path with ids folded: `{int}`, `{uuid}`, `{date}`, `{hash}`, `{token}`,
    /// `{str}`.
    pub shape: String,
    /// Estimated requests (over every instance, once merged).
    pub count: u64,
    /// Milliseconds since the Unix epoch.
    pub first_seen: u64,
    pub last_seen: u64,
    /// Some of [`SHAPE_KINDS`] (`page`, `xhr`, `asset`, `other`), in that order.
    pub kinds: Vec<String>,
    /// A method that may change something was seen.
    pub writes: bool,
    /// The rule that matched it when last seen.
    pub rule: Option<String>,
}

/// Several instances' shapes as one list: counts added, the earliest first and the latest last
/// sighting, the kinds of all, the rule of the latest; most seen first (then by shape and
/// method, so the order is stable).
pub fn merge_shapes(summaries: impl IntoIterator<Item = Vec<ShapeEntry>>) -> Vec<ShapeEntry> {
    let mut merged: HashMap<(String, String), ShapeEntry> = HashMap::new();
    for entry in summaries.into_iter().flatten() {
        let key = (entry.method.clone(), entry.shape.clone());
        match merged.get_mut(&key) {
            None => {
                merged.insert(key, entry);
            }
            Some(seen) => {
                seen.count = seen.count.saturating_add(entry.count);
                seen.first_seen = seen.first_seen.min(entry.first_seen);
                if entry.last_seen > seen.last_seen {
                    seen.last_seen = entry.last_seen;
                    seen.rule = entry.rule;
                }
                seen.writes |= entry.writes;
                seen.kinds.extend(entry.kinds);
            }
        }
    }
    let mut list: Vec<ShapeEntry> = merged
        .into_values()
        .map(|mut entry| {
            let kinds = std::mem::take(&mut entry.kinds);
            entry.kinds = SHAPE_KINDS
                .iter()
                .filter(|k| kinds.iter().any(|seen| seen == *k))
                .map(|k| (*k).to_owned())
                .collect();
            entry
        })
        .collect();
    list.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.shape.cmp(&b.shape))
            .then_with(|| a.method.cmp(&b.method))
    });
    list
}

/// Most related shapes [`RelatedShapes::of`] lists for one shape.
pub const MAX_RELATED: usize = 16;

/// Another path of the same object as a shape, offered for the same resource: `POST
/// /admin/pages/{int}/edit/preview/` beside `GET /admin/pages/{int}/edit/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelatedShape {
    pub shape: String,
    /// Every method it was seen with, in alphabetical order.
    pub methods: Vec<String>,
    /// One of those methods may change something.
    pub writes: bool,
    /// Estimated requests, over all its methods.
    pub count: u64,
    /// The rule pattern suggested for it; its resource is the one suggested for the shape it
    /// is related to.
    pub pattern: String,
}

/// The shapes of each object: shapes whose segments agree up to and including their first
/// placeholder (`/admin/pages/{int}`) are one object's, and a rule for one of them is
/// suggested the same resource as a rule for any other (`pages:{id}`), since
/// [`suggest_rule`] names the resource after that prefix alone.
pub struct RelatedShapes {
    /// Object prefix to its paths, writes first, then the most seen, then by path.
    groups: HashMap<String, Vec<RelatedShape>>,
}

impl RelatedShapes {
    /// The groups of merged shapes (as [`merge_shapes`] returns them).
    pub fn new(shapes: &[ShapeEntry]) -> RelatedShapes {
        let mut groups: HashMap<String, Vec<RelatedShape>> = HashMap::new();
        for entry in shapes {
            let Some(prefix) = object_prefix(&entry.shape) else {
                continue;
            };
            let group = groups.entry(prefix.to_owned()).or_default();
            match group.iter_mut().find(|r| r.shape == entry.shape) {
                Some(seen) => {
                    seen.methods.push(entry.method.clone());
                    seen.writes |= entry.writes;
                    seen.count = seen.count.saturating_add(entry.count);
                }
                None => group.push(RelatedShape {
                    shape: entry.shape.clone(),
                    methods: vec![entry.method.clone()],
                    writes: entry.writes,
                    count: entry.count,
                    pattern: suggest_rule(&entry.shape).0,
                }),
            }
        }
        for group in groups.values_mut() {
            for related in group.iter_mut() {
                related.methods.sort();
                related.methods.dedup();
            }
            group.sort_by(|a, b| {
                b.writes
                    .cmp(&a.writes)
                    .then_with(|| b.count.cmp(&a.count))
                    .then_with(|| a.shape.cmp(&b.shape))
            });
        }
        RelatedShapes { groups }
    }

    /// The other paths of `shape`'s object, writes first, at most [`MAX_RELATED`]; none for a
    /// shape without a placeholder. A rule for `shape` already covers its own path whatever
    /// the method, so that path is not among them.
    pub fn of(&self, shape: &str) -> Vec<RelatedShape> {
        let Some(group) = object_prefix(shape).and_then(|p| self.groups.get(p)) else {
            return Vec::new();
        };
        group
            .iter()
            .filter(|r| r.shape != shape)
            .take(MAX_RELATED)
            .cloned()
            .collect()
    }
}

/// A shape up to and including its first placeholder segment: `/admin/pages/{int}` for
/// `/admin/pages/{int}/edit/`; `None` for a shape without one.
fn object_prefix(shape: &str) -> Option<&str> {
    let mut end = 0;
    for segment in shape.strip_prefix('/')?.split('/') {
        end += 1 + segment.len();
        if Fold::from_placeholder(segment).is_some() {
            return Some(&shape[..end]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expected: &str) {
        assert_eq!(shape(path), expected, "{path}");
    }

    #[test]
    fn ids_fold_to_typed_placeholders_and_words_stay() {
        check("/", "/");
        check("/admin/pages/3/edit/", "/admin/pages/{int}/edit/");
        check(
            "/admin/pages/41/edit/preview/",
            "/admin/pages/{int}/edit/preview/",
        );
        check("/docs/007", "/docs/{int}");
        check(
            "/files/123e4567-e89b-12d3-a456-426614174000",
            "/files/{uuid}",
        );
        check(
            "/files/123E4567E89B12D3A456426614174000/x",
            "/files/{uuid}/x",
        );
        check("/blog/2026-12-06/post", "/blog/{date}/post");
        check(
            "/commit/9fceb02d0ae598e95dc970b74767f19372d61af8",
            "/commit/{hash}",
        );
        check(
            "/static/app.3f2a1b9c8d7e6f50.js",
            "/static/app.3f2a1b9c8d7e6f50.js",
        );
        check("/reset/Zx81kQ2mP0aL9sT7wY3v", "/reset/{token}");
        check("/a/b/c", "/a/b/c");
        check("/edit", "/edit");
        check("/users/alice@example.com/edit", "/users/{str}/edit");
        // Words that look a little like ids stay words.
        check("/v2/api", "/v2/api");
        check("/deadbeef", "/deadbeef");
        check("/my-first-blog-post", "/my-first-blog-post");
        check("/2026-13-99x", "/2026-13-99x");
    }

    #[test]
    fn a_shape_is_bounded_and_cannot_fake_a_placeholder() {
        check(&format!("/x/{}", "a".repeat(49)), "/x/{str}");
        check(
            &format!("/x/{}", "a".repeat(48)),
            &format!("/x/{}", "a".repeat(48)),
        );
        check("/{int}/a{b}", "/%7Bint%7D/a%7Bb%7D");
        let deep = "/a".repeat(100);
        let folded = shape(&deep);
        assert_eq!(folded, format!("{}/{{rest}}", "/a".repeat(MAX_SEGMENTS)));
        let worst = format!("/{}", "{".repeat(MAX_LITERAL)).repeat(40);
        assert!(
            shape(&worst).len() <= MAX_SHAPE_LEN,
            "{}",
            shape(&worst).len()
        );
    }

    #[test]
    fn a_rule_is_suggested_from_a_shape() {
        for (shape, pattern, resource) in [
            (
                "/admin/pages/{int}/edit/",
                "/admin/pages/{id:int}/edit/",
                "pages:{id}",
            ),
            (
                "/files/{uuid}/v/{int}",
                "/files/{id:uuid}/v/{id2:int}",
                "files:{id}:{id2}",
            ),
            ("/settings", "/settings", "settings"),
            ("/", "/", "root"),
            ("/{int}", "/{id:int}", "object:{id}"),
            ("/r/{token}", "/r/{id:slug}", "r:{id}"),
            (
                "/blog/{date}/x.y",
                r"/blog/(?P<id>\d{4}-\d{2}-\d{2})/x\.y",
                "blog:{id}",
            ),
            ("/a/%7Bb%7D/{int}", r"/a/\{b\}/{id:int}", "%7Bb%7D:{id}"),
        ] {
            let (p, r) = suggest_rule(shape);
            assert_eq!((p.as_str(), r.as_str()), (pattern, resource), "{shape}");
        }
    }

    #[test]
    fn a_suggested_rule_is_valid_and_locks_each_object_of_its_shape_apart() {
        for (paths, shared) in [
            (["/admin/pages/3/edit/", "/admin/pages/41/edit/"], false),
            (
                [
                    "/files/123e4567-e89b-12d3-a456-426614174000/v/2",
                    "/files/123e4567-e89b-12d3-a456-426614174000/v/02",
                ],
                true,
            ),
            (["/blog/2026-12-06/x.y", "/blog/2026-12-07/x.y"], false),
            (
                ["/r/Zx81kQ2mP0aL9sT7wY3v", "/r/Zx81kQ2mP0aL9sT7wY3w"],
                false,
            ),
        ] {
            let shape = shape(paths[0]);
            assert_eq!(super::shape(paths[1]), shape);
            let (pattern, resource) = suggest_rule(&shape);
            let mut rule = crate::Rule::new("suggested", pattern.as_str());
            rule.resource = Some(resource);
            let set = crate::RuleSet::compile(vec![rule])
                .unwrap_or_else(|issues| panic!("{pattern}: {issues:?}"));
            let keys: Vec<String> = paths
                .iter()
                .map(|p| {
                    set.find("GET", p)
                        .unwrap_or_else(|| panic!("{pattern} misses {p}"))
                        .resource
                })
                .collect();
            assert_eq!(keys[0] == keys[1], shared, "{keys:?}");
        }
    }

    fn entry(
        method: &str,
        shape: &str,
        count: u64,
        seen: (u64, u64),
        kinds: &[&str],
    ) -> ShapeEntry {
        ShapeEntry {
            method: method.to_owned(),
            shape: shape.to_owned(),
            count,
            first_seen: seen.0,
            last_seen: seen.1,
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            writes: method == "POST",
            rule: (seen.1 > 5).then(|| format!("r{}", seen.1)),
        }
    }

    #[test]
    fn the_shapes_of_several_instances_merge_into_one_list() {
        let a = vec![
            entry("GET", "/p/{int}/edit/", 80, (1, 5), &["xhr"]),
            entry("POST", "/p/{int}/edit/", 8, (2, 2), &["xhr"]),
        ];
        let b = vec![
            entry("GET", "/p/{int}/edit/", 16, (3, 9), &["page"]),
            entry("GET", "/other", 200, (4, 4), &["asset"]),
        ];
        let merged = merge_shapes([a, b]);
        assert_eq!(
            merged,
            [
                entry("GET", "/other", 200, (4, 4), &["asset"]),
                ShapeEntry {
                    rule: Some("r9".to_owned()),
                    ..entry("GET", "/p/{int}/edit/", 96, (1, 9), &["page", "xhr"])
                },
                entry("POST", "/p/{int}/edit/", 8, (2, 2), &["xhr"]),
            ]
        );
        assert!(merge_shapes(Vec::<Vec<ShapeEntry>>::new()).is_empty());
    }

    fn related(method: &str, shape: &str, count: u64, writes: bool) -> ShapeEntry {
        ShapeEntry {
            writes,
            ..entry(method, shape, count, (1, 1), &["page"])
        }
    }

    /// (shape, methods, writes) of each related shape, in order.
    fn listed(found: &[RelatedShape]) -> Vec<(&str, Vec<&str>, bool)> {
        found
            .iter()
            .map(|r| {
                let methods = r.methods.iter().map(String::as_str).collect();
                (r.shape.as_str(), methods, r.writes)
            })
            .collect()
    }

    #[test]
    fn the_paths_of_one_object_are_related_writes_first() {
        let merged = merge_shapes([vec![
            related("GET", "/admin/pages/{int}/edit/", 90, false),
            related("GET", "/admin/pages/{int}/", 70, false),
            related("GET", "/admin/pages/{int}/edit/preview/", 40, false),
            related("POST", "/admin/pages/{int}/edit/preview/", 30, true),
            related("POST", "/admin/pages/{int}/edit/", 20, true),
            related("POST", "/admin/pages/{int}/lock/", 5, true),
            related("POST", "/admin/pages/{int}/unlock/", 5, true),
            related("GET", "/admin/pages/{int}", 3, false),
            // Other objects, and pages without an id.
            related("POST", "/admin/images/{int}/edit/", 50, true),
            related("GET", "/admin/pages/", 60, false),
            related("GET", "/admin/pages/search/", 10, false),
            related("GET", "/admin/{int}/pages/{int}/", 10, false),
            related("GET", "/admin/pages/{uuid}/edit/", 10, false),
        ]]);
        let groups = RelatedShapes::new(&merged);
        let found = groups.of("/admin/pages/{int}/edit/");
        assert_eq!(
            listed(&found),
            [
                (
                    "/admin/pages/{int}/edit/preview/",
                    vec!["GET", "POST"],
                    true
                ),
                ("/admin/pages/{int}/lock/", vec!["POST"], true),
                ("/admin/pages/{int}/unlock/", vec!["POST"], true),
                ("/admin/pages/{int}/", vec!["GET"], false),
                ("/admin/pages/{int}", vec!["GET"], false),
            ]
        );
        assert_eq!(found[0].count, 70);
        assert_eq!(found[0].pattern, "/admin/pages/{id:int}/edit/preview/");
        // Each related pattern captures the same `id` the suggested resource names.
        let (_, resource) = suggest_rule("/admin/pages/{int}/edit/");
        assert_eq!(resource, "pages:{id}");
        for r in &found {
            assert_eq!(suggest_rule(&r.shape).1, resource, "{}", r.shape);
        }
        // Related both ways, the shape asked about never among its own.
        let back = groups.of("/admin/pages/{int}/lock/");
        assert_eq!(back[0].shape, "/admin/pages/{int}/edit/");
        assert!(back.iter().all(|r| r.shape != "/admin/pages/{int}/lock/"));
        assert_eq!(back.len(), found.len());
        assert!(
            groups.of("/admin/pages/").is_empty(),
            "no placeholder, no object"
        );
        assert!(groups.of("/admin/pages/search/").is_empty());
        assert!(groups.of("/admin/images/{int}/edit/").is_empty(), "alone");
        assert!(
            groups.of("/admin/pages/{uuid}/edit/").is_empty(),
            "another id type"
        );
        assert!(groups.of("/nowhere/{int}").is_empty(), "not seen at all");
    }

    #[test]
    fn an_object_with_many_paths_lists_a_bounded_number() {
        let shapes: Vec<ShapeEntry> = (0..100)
            .map(|i| related("POST", &format!("/o/{{int}}/action{i}/"), i, true))
            .collect();
        let groups = RelatedShapes::new(&merge_shapes([shapes]));
        let found = groups.of("/o/{int}/action0/");
        assert_eq!(found.len(), MAX_RELATED);
        assert_eq!(found[0].shape, "/o/{int}/action99/", "the most seen first");
        // A literal brace in a path is escaped, so it is not read as a placeholder.
        assert_eq!(object_prefix(&shape("/o/{int}/x")), None);
        assert_eq!(object_prefix("/o/{int}/x"), Some("/o/{int}"));
    }
}
