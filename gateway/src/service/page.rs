//! Lists by page: every list takes a page size and an opaque cursor, reads one row more than
//! the page off an index in the list's order (keyset paging, so a deep page costs what the
//! first does), and hands back the page with the cursor of the next one when there is one.

use super::{Error, Result};
use crate::error::ErrorCode;

/// The page size when none is asked for.
pub const DEFAULT_LIMIT: i64 = 100;
/// The largest page; a larger size counts as this one (and a size below 1 as 1).
pub const MAX_LIMIT: i64 = 1000;

/// A page of a list, and the cursor of the next one when there are more.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page with nothing on it, and nothing after it.
    pub fn empty() -> Page<T> {
        Page {
            items: Vec::new(),
            next: None,
        }
    }

    /// The same page with its items made into something else.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// What a caller asks of a list: a page size and where the page starts.
#[derive(Debug, Default, Clone)]
pub struct PageAsk {
    /// At most this many (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    pub limit: Option<i64>,
    /// The cursor the page before ended with.
    pub cursor: Option<String>,
}

/// The position of an item in a list's order, as a cursor carries it.
pub trait Key: Sized {
    fn parts(&self) -> Vec<String>;
    fn from_parts(parts: &[&str]) -> Option<Self>;
}

impl Key for String {
    fn parts(&self) -> Vec<String> {
        vec![self.clone()]
    }
    fn from_parts(parts: &[&str]) -> Option<Self> {
        match parts {
            [a] => Some((*a).to_owned()),
            _ => None,
        }
    }
}

impl Key for i64 {
    fn parts(&self) -> Vec<String> {
        vec![self.to_string()]
    }
    fn from_parts(parts: &[&str]) -> Option<Self> {
        match parts {
            [a] => a.parse().ok(),
            _ => None,
        }
    }
}

impl Key for (String, String) {
    fn parts(&self) -> Vec<String> {
        vec![self.0.clone(), self.1.clone()]
    }
    fn from_parts(parts: &[&str]) -> Option<Self> {
        match parts {
            [a, b] => Some(((*a).to_owned(), (*b).to_owned())),
            _ => None,
        }
    }
}

/// One page of one list, made ready for its query: the page size and the key the page starts
/// after, decoded from the cursor.
#[derive(Debug)]
pub struct Window<K> {
    list: &'static str,
    pub limit: i64,
    pub after: Option<K>,
}

impl<K: Key> Window<K> {
    /// The page `ask` asks of the list named `list`; a cursor that is not one this list gave
    /// out is refused `bad_filter`.
    pub fn of(list: &'static str, ask: &PageAsk) -> Result<Window<K>> {
        let after = match &ask.cursor {
            None => None,
            Some(c) => Some(decode(list, c).ok_or_else(|| {
                Error::invalid(ErrorCode::BadFilter, "not a cursor this list gave out")
            })?),
        };
        Ok(Window {
            list,
            limit: ask.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
            after,
        })
    }

    /// How many rows to read: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page of `rows` (read with [`Self::fetch`]), with the cursor after its last item
    /// when more rows followed it.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> K) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(usize::MAX));
        let next = more
            .then(|| rows.last().map(|r| encode(self.list, &key(r))))
            .flatten();
        Page { items: rows, next }
    }
}

/// An opaque cursor: the list's name and the position of an item in its order.
fn encode(list: &str, key: &impl Key) -> String {
    use base64::Engine as _;
    let mut parts = vec![list.to_owned()];
    parts.extend(key.parts());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(parts.join("\n"))
}

fn decode<K: Key>(list: &str, cursor: &str) -> Option<K> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let parts: Vec<&str> = text.split('\n').collect();
    match parts.split_first() {
        Some((name, rest)) if *name == list => K::from_parts(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(limit: Option<i64>, cursor: Option<&str>) -> PageAsk {
        PageAsk {
            limit,
            cursor: cursor.map(str::to_owned),
        }
    }

    #[test]
    fn a_page_ends_with_a_cursor_only_when_more_follow() {
        let w = Window::<i64>::of("audit", &ask(Some(2), None)).unwrap();
        assert_eq!(w.fetch(), 3);
        let full = w.page(vec![1_i64, 2, 3], |r| *r);
        assert_eq!(full.items, [1, 2]);
        let next = full.next.expect("a third row followed");
        let w2 = Window::<i64>::of("audit", &ask(Some(2), Some(&next))).unwrap();
        assert_eq!(w2.after, Some(2));
        let last = w2.page(vec![3_i64, 4], |r| *r);
        assert_eq!((last.items, last.next), (vec![3, 4], None));
    }

    #[test]
    fn sizes_are_bounded() {
        let size = |l| Window::<i64>::of("x", &ask(l, None)).unwrap().limit;
        assert_eq!(
            [size(None), size(Some(0)), size(Some(-5)), size(Some(5000))],
            [DEFAULT_LIMIT, 1, 1, MAX_LIMIT]
        );
    }

    #[test]
    fn cursors_of_another_list_or_shape_are_refused() {
        let w = Window::<(String, String)>::of("sandboxes", &ask(None, None)).unwrap();
        let c = w
            .page(vec![("t".to_owned(), "sb-1".to_owned()); 101], Clone::clone)
            .next
            .unwrap();
        assert!(Window::<(String, String)>::of("sandboxes", &ask(None, Some(&c))).is_ok());
        for bad in ["", "not-a-cursor", "%%%", c.as_str()] {
            let refused = Window::<(String, String)>::of("runs", &ask(None, Some(bad)));
            assert!(
                matches!(
                    refused,
                    Err(Error::Invalid {
                        code: ErrorCode::BadFilter,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        assert!(Window::<i64>::of("sandboxes", &ask(None, Some(&c))).is_err());
    }
}
