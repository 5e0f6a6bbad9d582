//! Pagination of list calls, the same in every service: `page_size` 1..=100 (0 means the
//! call's default), `page_token` the id of the last item of the previous page (ids are UUIDv7,
//! so they sort by creation and "newest first" is "id descending").

use tonic::Status;

use crate::error::invalid_field;

pub const MAX_PAGE_SIZE: u64 = 100;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    /// List only items before this id.
    pub before: Option<String>,
}

impl Page {
    pub fn parse(page_size: i32, page_token: String, default_size: u64) -> Result<Self, Status> {
        let limit = match page_size {
            0 => default_size,
            n if n < 0 || n as u64 > MAX_PAGE_SIZE => {
                return Err(invalid_field("page_size", "must be between 1 and 100"));
            }
            n => n as u64,
        };
        if page_token.is_empty() {
            return Ok(Self { limit, before: None });
        }
        uuid::Uuid::parse_str(&page_token)
            .map_err(|_| invalid_field("page_token", "is not a token from a previous page"))?;
        Ok(Self { limit, before: Some(page_token) })
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
        let table: [(i32, &str, Result<Page, &str>); 6] = [
            (0, "", Ok(Page { limit: 20, before: None })),
            (1, "", Ok(Page { limit: 1, before: None })),
            (100, &id, Ok(Page { limit: 100, before: Some(id.clone()) })),
            (101, "", Err("page_size")),
            (-1, "", Err("page_size")),
            (10, "not-a-token", Err("page_token")),
        ];
        for (size, token, want) in table {
            let got = Page::parse(size, token.to_string(), 20);
            match want {
                Ok(page) => assert_eq!(got.unwrap(), page),
                Err(field) => assert!(got.unwrap_err().message().starts_with(field), "{size} {token}"),
            }
        }
    }

    #[test]
    fn a_full_page_points_at_its_last_item_and_a_short_one_ends_the_list() {
        let page = Page { limit: 2, before: None };
        assert_eq!(page.next_token(["a", "b"].into_iter()), "b");
        assert_eq!(page.next_token(["a"].into_iter()), "");
        assert_eq!(page.next_token(std::iter::empty()), "");
    }
}
