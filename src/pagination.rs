//! Lists as the management API answers them: `limit` with `offset`, or with `cursor` on the
//! lists that page by key.
//!
//! An offset counts rows, so a row inserted before the offset while a client pages shifts
//! every later row by one: the client sees a row twice (or, after a delete, misses one). A
//! cursor names the last row of the previous page instead, and the next page starts after
//! that row's key, wherever rows are inserted meanwhile: every row that existed when paging
//! began is seen exactly once. Lists that support it answer `meta.next_cursor`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// Longest cursor accepted (a key is a name or a number; names are short).
const MAX_CURSOR: usize = 512;

/// A requested page (query parameters).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageRequest {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// `meta.next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// A validated page.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
    /// The key of the last row of the previous page, decoded from `cursor`.
    after: Option<String>,
}

impl PageRequest {
    /// A page of a list paged by offset only: a cursor is refused.
    pub fn validate(self) -> Result<Page> {
        if self.cursor.is_some() {
            return Err(Error::invalid(
                "this list pages by offset; cursor is not supported here",
            ));
        }
        self.validate_keyed()
    }

    /// A page of a list paged by key ([`Paginated::keyed`]): `cursor` or `offset`.
    pub fn validate_keyed(self) -> Result<Page> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        let offset = self.offset.unwrap_or(0);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        if offset < 0 {
            return Err(Error::invalid("offset must not be negative"));
        }
        let after = match self.cursor.as_deref() {
            None => None,
            Some(_) if offset != 0 => {
                return Err(Error::invalid("give either cursor or offset, not both"));
            }
            Some(cursor) => Some(decode_cursor(cursor)?),
        };
        Ok(Page {
            limit,
            offset,
            after,
        })
    }
}

fn bad_cursor() -> Error {
    Error::invalid("cursor is not one this list gave out")
}

fn decode_cursor(cursor: &str) -> Result<String> {
    if cursor.len() > MAX_CURSOR {
        return Err(bad_cursor());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
    String::from_utf8(bytes).map_err(|_| bad_cursor())
}

fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

impl Page {
    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    /// For a list paged by a text key: the key the page starts after, if a cursor was given.
    pub fn after_text(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// For a list paged by a number: the key the page starts after, if a cursor was given;
    /// 400 when the cursor holds no number.
    pub fn after_number(&self) -> Result<Option<i64>> {
        self.after
            .as_deref()
            .map(|key| key.parse().map_err(|_| bad_cursor()))
            .transpose()
    }
}

#[derive(Debug, Serialize)]
pub struct Meta {
    pub limit: i64,
    pub offset: i64,
    /// The offset of the next page; `null` on the last page, and when paging by cursor.
    pub next_offset: Option<i64>,
    /// The cursor of the next page, on lists paged by key; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `{"data": [...], "meta": {...}}`.
#[derive(Debug, Serialize)]
pub struct Paginated<T> {
    pub data: Vec<T>,
    pub meta: Meta,
}

impl<T> Paginated<T> {
    /// Builds a page from rows fetched with [`Page::fetch_limit`].
    pub fn new(rows: Vec<T>, page: Page) -> Self {
        Self::build(rows, &page).0
    }

    /// Builds a page of a list paged by key from rows fetched with [`Page::fetch_limit`]
    /// in key order, after [`Page::after_text`] or [`Page::after_number`]: `next_cursor`
    /// carries `key` of the page's last row.
    pub fn keyed(rows: Vec<T>, page: Page, key: impl Fn(&T) -> String) -> Self {
        let (mut list, more) = Self::build(rows, &page);
        if more {
            list.meta.next_cursor = list.data.last().map(|row| encode_cursor(&key(row)));
        }
        list
    }

    /// The page, and whether another follows.
    fn build(mut rows: Vec<T>, page: &Page) -> (Self, bool) {
        let more = rows.len() as i64 > page.limit;
        rows.truncate(page.limit as usize);
        let list = Paginated {
            data: rows,
            meta: Meta {
                limit: page.limit,
                offset: page.offset,
                next_offset: (more && page.after.is_none()).then_some(page.offset + page.limit),
                next_cursor: None,
            },
        };
        (list, more)
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paginated<U> {
        Paginated {
            data: self.data.into_iter().map(f).collect(),
            meta: self.meta,
        }
    }
}
