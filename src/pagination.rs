//! `limit`/`offset` lists as the management API answers them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// A requested page (query parameters).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PageRequest {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// A validated page.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl PageRequest {
    pub fn validate(self) -> Result<Page> {
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
        Ok(Page { limit, offset })
    }
}

impl Page {
    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }
}

#[derive(Debug, Serialize)]
pub struct Meta {
    pub limit: i64,
    pub offset: i64,
    pub next_offset: Option<i64>,
}

/// `{"data": [...], "meta": {...}}`.
#[derive(Debug, Serialize)]
pub struct Paginated<T> {
    pub data: Vec<T>,
    pub meta: Meta,
}

impl<T> Paginated<T> {
    /// Builds a page from rows fetched with [`Page::fetch_limit`].
    pub fn new(mut rows: Vec<T>, page: Page) -> Self {
        let more = rows.len() as i64 > page.limit;
        rows.truncate(page.limit as usize);
        Paginated {
            data: rows,
            meta: Meta {
                limit: page.limit,
                offset: page.offset,
                next_offset: more.then_some(page.offset + page.limit),
            },
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paginated<U> {
        Paginated {
            data: self.data.into_iter().map(f).collect(),
            meta: self.meta,
        }
    }
}
