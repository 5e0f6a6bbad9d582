//! Pagination of list calls, the same in every service: `page_size` 1..=100 (0 means the
//! call's default), `page_token` the id of the last item of the previous page (ids are UUIDv7,
//! so they sort by creation and "newest first" is "id descending").
//!
//! The reference API pages with `limit` and `offset` instead; both are accepted. `limit` is
//! another name for `page_size` (given both, the smaller applies, so a page is never longer than
//! either asks) and `offset`
//! skips items after the token's position, so either style pages through the same list.

use tonic::Status;

use crate::error::invalid_field;

pub const MAX_PAGE_SIZE: u64 = 100;

/// The largest `offset`: deeper pages are for page tokens, which cost the database nothing.
pub const MAX_OFFSET: u64 = 10_000;

/// A list call's paging fields, as the request carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    pub page_size: i32,
    pub page_token: String,
    pub limit: i32,
    pub offset: i32,
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    /// List only items before this id.
    pub before: Option<String>,
    /// Skip this many items first.
    pub offset: u64,
}

impl Page {
    pub fn parse(query: PageQuery, default_size: u64) -> Result<Self, Status> {
        let size = |value: i32, field: &str| match value {
            0 => Ok(None),
            n if n < 0 || n as u64 > MAX_PAGE_SIZE => Err(invalid_field(field, "must be between 1 and 100")),
            n => Ok(Some(n as u64)),
        };
        let limit = match (size(query.page_size, "page_size")?, size(query.limit, "limit")?) {
            (Some(a), Some(b)) => a.min(b),
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => default_size,
        };
        let offset = match query.offset {
            n if n < 0 || n as u64 > MAX_OFFSET => {
                return Err(invalid_field("offset", format!("must be between 0 and {MAX_OFFSET}")));
            }
            n => n as u64,
        };
        if query.page_token.is_empty() {
            return Ok(Self { limit, before: None, offset });
        }
        uuid::Uuid::parse_str(&query.page_token)
            .map_err(|_| invalid_field("page_token", "is not a token from a previous page"))?;
        Ok(Self { limit, before: Some(query.page_token), offset })
    }

    /// The token of the page after one that returned `ids`; empty when it was the last.
    pub fn next_token<'a>(&self, ids: impl DoubleEndedIterator<Item = &'a str> + ExactSizeIterator) -> String {
        if (ids.len() as u64) < self.limit {
            return String::new();
        }
        ids.last().unwrap_or_default().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_and_tokens_are_checked() {
        let id = uuid::Uuid::now_v7().to_string();
        let page = |limit, before: Option<&str>, offset| Page { limit, before: before.map(str::to_string), offset };
        // (page_size, limit, offset, token) -> the page, or the field named in the error.
        let table: [((i32, i32, i32, &str), Result<Page, &str>); 14] = [
            ((0, 0, 0, ""), Ok(page(20, None, 0))),
            ((1, 0, 0, ""), Ok(page(1, None, 0))),
            ((100, 0, 0, &id), Ok(page(100, Some(&id), 0))),
            ((0, 7, 0, ""), Ok(page(7, None, 0))),
            ((7, 7, 3, ""), Ok(page(7, None, 3))),
            ((0, 0, 10_000, &id), Ok(page(20, Some(&id), 10_000))),
            ((101, 0, 0, ""), Err("page_size")),
            ((-1, 0, 0, ""), Err("page_size")),
            ((0, 101, 0, ""), Err("limit")),
            ((5, 6, 0, ""), Ok(page(5, None, 0))),
            ((9, 3, 0, ""), Ok(page(3, None, 0))),
            ((0, 0, -1, ""), Err("offset")),
            ((0, 0, 10_001, ""), Err("offset")),
            ((10, 0, 0, "not-a-token"), Err("page_token")),
        ];
        for ((page_size, limit, offset, token), want) in table {
            let query = PageQuery { page_size, page_token: token.to_string(), limit, offset };
            let got = Page::parse(query.clone(), 20);
            match want {
                Ok(page) => assert_eq!(got.unwrap(), page),
                Err(field) => assert!(got.unwrap_err().message().starts_with(field), "{query:?}"),
            }
        }
    }

    #[test]
    fn a_full_page_points_at_its_last_item_and_a_short_one_ends_the_list() {
        let page = Page { limit: 2, before: None, offset: 0 };
        assert_eq!(page.next_token(["a", "b"].into_iter()), "b");
        assert_eq!(page.next_token(["a"].into_iter()), "");
        assert_eq!(page.next_token(std::iter::empty()), "");
    }
}
