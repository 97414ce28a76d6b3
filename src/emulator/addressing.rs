//! The documented addressing forms of the `/v1.0` API (OAD concepts/addressing-driveitems.md: `/me/drive`,
//! `/drives/{id}`, `root`, `items/{id}`, `special/{name}`, `…:/path/to/item:` with a following segment): a
//! request's parsed path and query ([`GraphRequest`], [`Target`]) and their resolution to drive items.

use super::drive::{Drive, ItemNo};
use super::errors::{GraphError, GraphResult};
use super::state::EmulatorState;
use axum::http::{header, HeaderMap, Method};
use percent_encoding::percent_decode_str;

/// How a request names its item.
#[derive(Clone, Debug, PartialEq)]
pub enum Base {
    Root,
    Id(String),
    Special(String),
}

/// An item address: a base and an optional path below it (`root:/a/b:`).
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub base: Base,
    pub path: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Me,
    Drives,
    Drive,
    Item { target: Target, rest: Vec<String> },
}

/// Query parameters, names case-sensitive as documented.
#[derive(Clone, Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Query(
            url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// An OData option, with or without its `$`.
    pub fn odata(&self, name: &str) -> Option<&str> {
        self.get(&format!("${name}")).or_else(|| self.get(name))
    }
    /// The query string without the named parameters (with and without `$`).
    pub fn without(&self, names: &[&str]) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            if !names.iter().any(|n| k == n || k.strip_prefix('$') == Some(n)) {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

/// One Graph request, as the handlers see it.
pub struct GraphRequest {
    pub method: Method,
    /// Path after `/v1.0`, still percent-encoded, e.g. `/me/drive/root/children`.
    pub path: String,
    pub query: Query,
    pub headers: HeaderMap,
}

impl GraphRequest {
    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Absolute URL of this resource with another query string.
    pub fn url_with_query(&self, state: &EmulatorState, query: &str) -> String {
        if query.is_empty() {
            format!("{}{}", state.graph_url, self.path)
        } else {
            format!("{}{}?{}", state.graph_url, self.path, query)
        }
    }
}

/// `delta(token='abc')` or `delta(token=abc)` → `abc`; `delta()` → none.
pub(crate) fn delta_function_token(segment: &str) -> Option<String> {
    let inner = segment.strip_prefix("delta(")?.strip_suffix(')')?;
    let value = inner.strip_prefix("token=")?;
    Some(value.trim_matches('\'').to_string())
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn split_segments(s: &str) -> Vec<String> {
    s.split('/').filter(|x| !x.is_empty()).map(decode).collect()
}

/// Splits the text after `/v1.0` into the addressed resource.
pub fn parse_path(raw: &str, drive_id: &str) -> GraphResult<Resource> {
    let p = raw.trim_start_matches('/');
    let unknown = || GraphError::invalid(format!("Resource not found for the segment '{raw}'"));
    let r = if p == "me" || p == "me/" {
        return Ok(Resource::Me);
    } else if p == "me/drives" || p == "drives" {
        return Ok(Resource::Drives);
    } else if let Some(r) = p.strip_prefix("me/drive") {
        r
    } else if let Some(r) = p.strip_prefix("drives/") {
        let (id, r) = r.split_at(r.find('/').unwrap_or(r.len()));
        let id = decode(id);
        let same = id.eq_ignore_ascii_case(drive_id)
            || id
                .trim_start_matches('0')
                .eq_ignore_ascii_case(drive_id.trim_start_matches('0'));
        if !same {
            return Err(GraphError::not_found(format!("drive '{id}'")));
        }
        r
    } else if let Some(r) = p.strip_prefix("drive") {
        r
    } else {
        return Err(unknown());
    };
    if !(r.is_empty() || r.starts_with('/')) {
        return Err(unknown());
    }
    let r = r.trim_start_matches('/');
    if r.is_empty() {
        return Ok(Resource::Drive);
    }
    let (base, after) = if let Some(after) = r
        .strip_prefix("root")
        .filter(|a| a.is_empty() || a.starts_with(['/', ':']))
    {
        (Base::Root, after)
    } else if let Some(x) = r.strip_prefix("items/") {
        let end = x.find(['/', ':']).unwrap_or(x.len());
        (Base::Id(decode(&x[..end])), &x[end..])
    } else if let Some(x) = r.strip_prefix("special/") {
        let end = x.find(['/', ':']).unwrap_or(x.len());
        (Base::Special(decode(&x[..end])), &x[end..])
    } else {
        return Err(GraphError::not_supported(format!(
            "'{r}' is not supported by this emulator"
        )));
    };
    let (path, after) = match after.strip_prefix(':') {
        Some(s) => {
            let (path_str, remaining) = match s.find(':') {
                Some(i) => (&s[..i], &s[i + 1..]),
                None => (s, ""),
            };
            let segs = split_segments(path_str);
            (if segs.is_empty() { None } else { Some(segs) }, remaining)
        }
        None => (None, after),
    };
    Ok(Resource::Item {
        target: Target { base, path },
        rest: split_segments(after),
    })
}

/// The item a reading request's target names (see [`Drive::special_for_read`]).
pub fn resolve(d: &mut Drive, t: &Target) -> GraphResult<ItemNo> {
    let base = resolve_base(d, &t.base)?;
    match &t.path {
        Some(p) => d.resolve_path(base, p),
        None => Ok(base),
    }
}

/// The item a writing request's target names: special folders are made on first write.
pub fn resolve_for_write(d: &mut Drive, t: &Target) -> GraphResult<ItemNo> {
    let base = resolve_base_for_write(d, &t.base)?;
    match &t.path {
        Some(p) => d.resolve_path(base, p),
        None => Ok(base),
    }
}

pub fn resolve_base(d: &mut Drive, b: &Base) -> GraphResult<ItemNo> {
    match b {
        Base::Root => Ok(super::drive::ROOT_NO),
        Base::Id(id) => d.live_by_id(id),
        Base::Special(name) => d.special_for_read(name, chrono::Utc::now()),
    }
}

pub fn resolve_base_for_write(d: &mut Drive, b: &Base) -> GraphResult<ItemNo> {
    match b {
        Base::Special(name) => d.special(name, chrono::Utc::now()),
        other => resolve_base(d, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(base: Base, path: Option<&[&str]>, rest: &[&str]) -> Resource {
        Resource::Item {
            target: Target {
                base,
                path: path.map(|p| p.iter().map(|s| s.to_string()).collect()),
            },
            rest: rest.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn parses_documented_addresses() {
        let d = "0123456789abcdef";
        assert_eq!(parse_path("/me/drive", d).unwrap(), Resource::Drive);
        assert_eq!(parse_path("/drives/0123456789ABCDEF", d).unwrap(), Resource::Drive);
        assert_eq!(parse_path("/drives/ffff", d).unwrap_err().code, "itemNotFound");
        assert_eq!(parse_path("/me/drive/root", d).unwrap(), item(Base::Root, None, &[]));
        assert_eq!(
            parse_path("/me/drive/root/children", d).unwrap(),
            item(Base::Root, None, &["children"])
        );
        assert_eq!(
            parse_path("/me/drive/root:/Pictures/Samsung%20Gallery:", d).unwrap(),
            item(Base::Root, Some(&["Pictures", "Samsung Gallery"]), &[])
        );
        assert_eq!(
            parse_path("/me/drive/root:/Pictures/a%3Fb.jpg", d).unwrap(),
            item(Base::Root, Some(&["Pictures", "a?b.jpg"]), &[])
        );
        assert_eq!(
            parse_path("/me/drive/items/X%21101:/a/b.jpg:/content", d).unwrap(),
            item(Base::Id("X!101".into()), Some(&["a", "b.jpg"]), &["content"])
        );
        assert_eq!(
            parse_path("/drives/0123456789abcdef/items/X!5/thumbnails/0/medium/content", d).unwrap(),
            item(Base::Id("X!5".into()), None, &["thumbnails", "0", "medium", "content"])
        );
        assert_eq!(
            parse_path("/me/drive/special/photos:/Samsung Gallery:/children", d).unwrap(),
            item(
                Base::Special("photos".into()),
                Some(&["Samsung Gallery"]),
                &["children"]
            )
        );
        assert_eq!(parse_path("/me/drive/root:/", d).unwrap(), item(Base::Root, None, &[]));
        assert_eq!(
            parse_path("/me/drive/root/delta", d).unwrap(),
            item(Base::Root, None, &["delta"])
        );
        assert_eq!(parse_path("/me/drive/rootx", d).unwrap_err().code, "notSupported");
        assert_eq!(parse_path("/users/x", d).unwrap_err().code, "invalidRequest");
    }

    #[test]
    fn delta_function_form() {
        assert_eq!(delta_function_token("delta(token='1.5')"), Some("1.5".into()));
        assert_eq!(delta_function_token("delta(token=latest)"), Some("latest".into()));
        assert_eq!(delta_function_token("delta"), None);
    }

    #[test]
    fn query_names_are_case_sensitive() {
        let q = Query::parse(Some("$select=id,name&top=5&%24skiptoken=abc"));
        assert_eq!(q.odata("select"), Some("id,name"));
        assert_eq!(q.odata("top"), Some("5"));
        assert_eq!(q.odata("skiptoken"), Some("abc"));
        assert_eq!(q.odata("SELECT"), None);
        assert_eq!(q.without(&["skiptoken", "top"]), "%24select=id%2Cname");
    }
}
