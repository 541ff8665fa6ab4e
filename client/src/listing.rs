//! [`Listing`]: walking a workspace's keys page by page until the daemon says there are no more.
//!
//! Both clients' `list` drive the same walk: ask for the page after the last one seen, append it, stop at
//! a page without `next`. The walk refuses a page that does not move forward, so a confused daemon cannot
//! keep a client asking forever.

use keyward_protocol::{KeyPage, KeyView, ListRequest, Request};

use crate::error::ClientError;

/// The state of one listing walk.
pub(crate) struct Listing {
    workspace: String,
    after: Option<String>,
    keys: Vec<KeyView>,
}

impl Listing {
    pub(crate) fn new(workspace: &str) -> Self {
        Listing { workspace: workspace.to_owned(), after: None, keys: Vec::new() }
    }

    /// The request for the next page (the daemon's default page size).
    pub(crate) fn next_request(&self) -> Request {
        Request::List(ListRequest { workspace: self.workspace.clone(), after: self.after.clone(), limit: 0 })
    }

    /// Appends a page; `Ok(true)` when another page follows.
    pub(crate) fn absorb(&mut self, page: KeyPage) -> Result<bool, ClientError> {
        let KeyPage { keys, next } = page;
        let Some(next) = next else {
            self.keys.extend(keys);
            return Ok(false);
        };
        if keys.is_empty() || self.after.as_deref() == Some(next.as_str()) {
            return Err(ClientError::UnexpectedReply {
                expected: "a listing page that moves forward",
                got: "a page that repeats the previous cursor",
            });
        }
        self.keys.extend(keys);
        self.after = Some(next);
        Ok(true)
    }

    pub(crate) fn into_keys(self) -> Vec<KeyView> {
        self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::key_view as key;

    #[test]
    fn follows_next_until_the_last_page() {
        let mut listing = Listing::new("ws");
        let page = KeyPage { keys: vec![key("a"), key("b")], next: Some("b".into()) };
        assert!(listing.absorb(page).unwrap());
        let Request::List(request) = listing.next_request() else { panic!("a list request") };
        assert_eq!(request.after.as_deref(), Some("b"));
        assert_eq!(request.limit, 0);
        assert!(!listing.absorb(KeyPage { keys: vec![key("c")], next: None }).unwrap());
        let ids: Vec<_> = listing.into_keys().into_iter().map(|k| k.id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn a_page_that_does_not_move_forward_is_refused() {
        let mut listing = Listing::new("ws");
        assert!(listing.absorb(KeyPage { keys: vec![key("a")], next: Some("a".into()) }).unwrap());
        let again = KeyPage { keys: vec![key("a")], next: Some("a".into()) };
        assert!(matches!(listing.absorb(again), Err(ClientError::UnexpectedReply { .. })));
        let empty = KeyPage { keys: vec![], next: Some("z".into()) };
        assert!(Listing::new("ws").absorb(empty).is_err());
    }
}
