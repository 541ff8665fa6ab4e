//! [`Answer`]: a decoded reply as the clients carry it, and decoding reply frames straight into it.
//!
//! A [`Reply`] is as large as its largest variant (a full key view, a few hundred bytes), and a reply
//! travels by value from the reader task through a oneshot to the caller. The clients therefore decode a
//! reply frame into an [`Answer`] instead: a verify answer, the hot path, stays inline; every other reply
//! is boxed. [`Answer::into_reply`] gives back the protocol's [`Reply`] for everything but `verify`.
//!
//! The decoding mirrors [`ReplyFrame`](keyward_protocol::ReplyFrame) and [`Reply`] with serde, variant for
//! variant and field for field, so the bytes are read exactly as the protocol's own types would read
//! them (the tests check every variant against the protocol's encoder). Large variants are boxed while
//! they are decoded, and a verify answer's key goes through [`super::shared_keys`].

use std::sync::Arc;

use keyward_protocol::{
    AccountView, AuditEntry, CreatedKey, ErrorReply, FleetReport, KeyPage, KeyUsage, KeyView, RateLimitStatus, Reply,
    StatsReport, UsageReport, VerifiedKey, VerifyAnswer, VerifyCode,
};
use serde::Deserialize;

use super::shared_keys;

/// A decoded reply: a verify answer inline, anything else boxed.
#[derive(Debug, PartialEq)]
pub(crate) enum Answer {
    Verify(VerifyAnswer),
    Other(Box<Reply>),
}

impl Answer {
    /// The protocol's reply.
    pub(crate) fn into_reply(self) -> Reply {
        match self {
            Answer::Verify(answer) => Reply::Verify(answer),
            Answer::Other(reply) => *reply,
        }
    }

    /// Whether this is an error reply.
    pub(crate) fn is_error(&self) -> bool {
        matches!(self, Answer::Other(reply) if matches!(**reply, Reply::Error(_)))
    }
}

/// A reply frame: the id it answers and the answer.
#[derive(Deserialize)]
pub(crate) struct AnswerFrame {
    pub(crate) id: u64,
    reply: ReplyMirror,
}

impl AnswerFrame {
    pub(crate) fn into_answer(self) -> Answer {
        self.reply.into_answer()
    }
}

/// [`Reply`], variant for variant in the same order (the encoding names variants by index).
#[derive(Deserialize)]
enum ReplyMirror {
    Pong,
    Verify(#[serde(deserialize_with = "VerifyAnswerMirror::deserialize")] VerifyAnswer),
    Created(Box<CreatedKey>),
    Keys(KeyPage),
    Key(Box<KeyView>),
    Error(ErrorReply),
    Audit(Vec<AuditEntry>),
    Account(Box<AccountView>),
    Usage(Box<UsageReport>),
    WorkspaceUsage(Vec<KeyUsage>),
    Stats(Box<StatsReport>),
    Fleet(Box<FleetReport>),
}

impl ReplyMirror {
    fn into_answer(self) -> Answer {
        let reply = match self {
            ReplyMirror::Verify(answer) => return Answer::Verify(answer),
            ReplyMirror::Pong => Reply::Pong,
            ReplyMirror::Created(created) => Reply::Created(*created),
            ReplyMirror::Keys(page) => Reply::Keys(page),
            ReplyMirror::Key(view) => Reply::Key(*view),
            ReplyMirror::Error(error) => Reply::Error(error),
            ReplyMirror::Audit(entries) => Reply::Audit(entries),
            ReplyMirror::Account(account) => Reply::Account(*account),
            ReplyMirror::Usage(report) => Reply::Usage(*report),
            ReplyMirror::WorkspaceUsage(keys) => Reply::WorkspaceUsage(keys),
            ReplyMirror::Stats(report) => Reply::Stats(report),
            ReplyMirror::Fleet(report) => Reply::Fleet(report),
        };
        Answer::Other(Box::new(reply))
    }
}

/// [`VerifyAnswer`], field for field, with its key shared when unchanged.
#[derive(Deserialize)]
#[serde(remote = "VerifyAnswer")]
struct VerifyAnswerMirror {
    code: VerifyCode,
    #[serde(deserialize_with = "shared_keys::deserialize")]
    key: Option<Arc<VerifiedKey>>,
    retry_after_ms: Option<u64>,
    ratelimit: Vec<RateLimitStatus>,
    credits: Option<u64>,
}

#[cfg(test)]
mod tests {
    use keyward_protocol::{codec, ErrorCode, ReplyFrame, Secret};

    use super::*;
    use crate::fixtures::{key_view, verified_key};

    fn through_mirror(reply: Reply) -> Reply {
        let bytes = codec::encode(&ReplyFrame { id: 7, reply }).unwrap();
        let frame: AnswerFrame = codec::decode(&bytes).unwrap();
        assert_eq!(frame.id, 7);
        frame.into_answer().into_reply()
    }

    /// One reply of each kind; the match makes a new variant of [`Reply`] fail to compile here until it is
    /// added to the mirror and to this list.
    fn one_of_each() -> Vec<Reply> {
        let samples = vec![
            Reply::Pong,
            Reply::Verify(VerifyAnswer {
                code: VerifyCode::RateLimited,
                key: Some(Arc::new(verified_key("AbCdEf012345"))),
                retry_after_ms: Some(250),
                ratelimit: vec![RateLimitStatus {
                    policy: "free".into(),
                    limit: 10,
                    remaining: 0,
                    reset_at_ms: 1_700_000_000_000,
                    window_seconds: 60,
                }],
                credits: Some(3),
            }),
            Reply::Created(CreatedKey { token: Secret::new("kw_live_x"), key: key_view("AbCdEf012345") }),
            Reply::Keys(KeyPage { keys: vec![key_view("AbCdEf012345")], next: Some("AbCdEf012345".into()) }),
            Reply::Key(key_view("AbCdEf012345")),
            Reply::Error(ErrorReply::new(ErrorCode::Busy, "try again")),
            Reply::Audit(vec![]),
            Reply::Account(AccountView::default()),
            Reply::Usage(UsageReport::default()),
            Reply::WorkspaceUsage(vec![KeyUsage::default()]),
            Reply::Stats(Box::default()),
            Reply::Fleet(Box::default()),
        ];
        for sample in &samples {
            match sample {
                Reply::Pong
                | Reply::Verify(_)
                | Reply::Created(_)
                | Reply::Keys(_)
                | Reply::Key(_)
                | Reply::Error(_)
                | Reply::Audit(_)
                | Reply::Account(_)
                | Reply::Usage(_)
                | Reply::WorkspaceUsage(_)
                | Reply::Stats(_)
                | Reply::Fleet(_) => {}
            }
        }
        samples
    }

    #[test]
    fn every_reply_decodes_as_the_protocol_decodes_it() {
        for reply in one_of_each() {
            assert_eq!(through_mirror(reply.clone()), reply);
        }
    }

    #[test]
    fn an_answer_is_small() {
        assert!(std::mem::size_of::<Answer>() <= std::mem::size_of::<VerifyAnswer>() + 8);
        assert!(std::mem::size_of::<ReplyMirror>() <= std::mem::size_of::<VerifyAnswer>() + 8);
        assert!(std::mem::size_of::<Reply>() > 2 * std::mem::size_of::<Answer>(), "else boxing buys nothing");
    }

    #[test]
    fn only_error_replies_are_errors() {
        assert!(Answer::Other(Box::new(Reply::Error(ErrorReply::new(ErrorCode::Busy, "x")))).is_error());
        assert!(!Answer::Other(Box::new(Reply::Pong)).is_error());
    }
}
