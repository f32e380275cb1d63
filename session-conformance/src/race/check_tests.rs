//! The checker on hand-built histories: each violation is found, and each
//! ambiguity the promises allow is accepted.

use session_core::SessionId;

use crate::race::{Action, CookieChange, History, Observed, OpIndex, Outcome, Violation};

/// A history built step by step; each call is one begin or end, in order.
struct Script {
    history: History,
}

fn values(pairs: &[(&str, u64)]) -> Observed {
    Observed::Values(
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), *value))
            .collect(),
    )
}

fn ok() -> Outcome {
    Outcome::Responded(CookieChange::Kept)
}

fn set(id: SessionId) -> Outcome {
    Outcome::Responded(CookieChange::Set(id))
}

fn removed() -> Outcome {
    Outcome::Responded(CookieChange::Removed)
}

fn failed() -> Outcome {
    Outcome::Failed("503".to_owned())
}

fn write(client: usize, value: u64) -> Action {
    Action::Write {
        key: format!("c{client}"),
        value,
    }
}

impl Script {
    /// Client 0 logs in as "ada", creating `id` with c0=1.
    fn logged_in(id: SessionId) -> Self {
        let script = Self {
            history: History::new(),
        };
        let login = script.begin(
            0,
            None,
            Action::Login {
                owner: "ada".to_owned(),
                key: "c0".to_owned(),
                value: 1,
            },
        );
        script.end(login, Observed::NotLoaded, set(id));
        script
    }

    fn begin(&self, client: usize, cookie: Option<SessionId>, action: Action) -> OpIndex {
        self.history.begin(client, 0, cookie, action)
    }

    fn end(&self, op: OpIndex, observed: Observed, outcome: Outcome) {
        self.history.end(op, observed, outcome);
    }

    /// A whole request, nothing else running meanwhile.
    fn run(
        &self,
        client: usize,
        cookie: Option<SessionId>,
        action: Action,
        observed: Observed,
        outcome: Outcome,
    ) -> OpIndex {
        let op = self.begin(client, cookie, action);
        self.end(op, observed, outcome);
        op
    }

    fn check(&self) -> Vec<Violation> {
        self.history.check()
    }
}

#[test]
fn a_session_read_after_its_writes_shows_them() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    s.run(1, Some(id), write(1, 1), values(&[("c0", 1)]), ok());
    s.run(
        0,
        Some(id),
        write(0, 2),
        values(&[("c0", 1), ("c1", 1)]),
        ok(),
    );
    s.run(
        2,
        Some(id),
        Action::Read,
        values(&[("c0", 2), ("c1", 1)]),
        ok(),
    );
    assert_eq!(s.check(), vec![]);
}

#[test]
fn an_acknowledged_write_no_read_shows_is_lost() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    let written = s.run(1, Some(id), write(1, 1), values(&[("c0", 1)]), ok());
    let read = s.run(0, Some(id), Action::Read, values(&[("c0", 1)]), ok());
    s.run(2, Some(id), Action::Read, values(&[("c0", 1)]), ok());
    let found = s.check();
    assert!(
        found.contains(&Violation::LostWrite {
            write: written,
            read,
            key: "c1".to_owned(),
            written: 1,
            seen: None
        }),
        "{found:?}"
    );
    assert!(
        found[0].to_string().starts_with("lost write: #1 set c1=1"),
        "{}",
        found[0]
    );
}

#[test]
fn an_acknowledged_write_missing_from_one_read_but_seen_later_is_a_stale_read() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    let written = s.run(0, Some(id), write(0, 2), values(&[("c0", 1)]), ok());
    let read = s.run(1, Some(id), Action::Read, values(&[("c0", 1)]), ok());
    s.run(2, Some(id), Action::Read, values(&[("c0", 2)]), ok());
    assert_eq!(
        s.check(),
        vec![Violation::StaleRead {
            write: written,
            read,
            key: "c0".to_owned(),
            written: 2,
            seen: Some(1)
        }]
    );
}

#[test]
fn a_write_still_in_flight_when_a_read_began_may_be_missing_from_it() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    let writing = s.begin(0, Some(id), write(0, 2));
    let reading = s.begin(1, Some(id), Action::Read);
    s.end(writing, values(&[("c0", 1)]), ok());
    s.end(reading, values(&[("c0", 1)]), ok());
    s.run(2, Some(id), Action::Read, values(&[("c0", 2)]), ok());
    assert_eq!(s.check(), vec![]);
}

#[test]
fn a_failed_write_may_or_may_not_have_happened() {
    for later in [1, 2] {
        let id = SessionId::generate();
        let s = Script::logged_in(id);
        s.run(0, Some(id), write(0, 2), values(&[("c0", 1)]), failed());
        s.run(1, Some(id), Action::Read, values(&[("c0", later)]), ok());
        s.run(2, Some(id), Action::Read, values(&[("c0", later)]), ok());
        assert_eq!(s.check(), vec![], "a read showing c0={later}");
    }
}

#[test]
fn a_failed_write_once_seen_must_not_disappear() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    s.run(0, Some(id), write(0, 2), values(&[("c0", 1)]), failed());
    let earlier = s.run(1, Some(id), Action::Read, values(&[("c0", 2)]), ok());
    let later = s.run(2, Some(id), Action::Read, values(&[("c0", 1)]), ok());
    assert_eq!(
        s.check(),
        vec![Violation::WentBackwards {
            earlier,
            later,
            key: "c0".to_owned(),
            earlier_value: 2,
            later_value: Some(1),
            same_client: false,
        }]
    );
}

#[test]
fn a_client_never_sees_its_session_go_backwards() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    // Client 0's write is in flight through both of client 1's reads, so
    // neither read has to show it; but once one did, the next must too.
    let writing = s.begin(0, Some(id), write(0, 2));
    let earlier = s.run(1, Some(id), Action::Read, values(&[("c0", 2)]), ok());
    let later = s.run(1, Some(id), Action::Read, values(&[("c0", 1)]), ok());
    s.end(writing, values(&[("c0", 1)]), ok());
    let found = s.check();
    assert_eq!(
        found,
        vec![Violation::WentBackwards {
            earlier,
            later,
            key: "c0".to_owned(),
            earlier_value: 2,
            later_value: Some(1),
            same_client: true,
        }]
    );
    assert!(
        found[0].to_string().contains("(same client)"),
        "{}",
        found[0]
    );
}

#[test]
fn a_session_served_after_an_acknowledged_logout_is_a_resurrection() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    let end = s.run(0, Some(id), Action::Destroy, Observed::NotLoaded, removed());
    let read = s.run(1, Some(id), Action::Read, values(&[("c0", 1)]), ok());
    assert_eq!(s.check(), vec![Violation::Resurrected { end, read }]);
}

#[test]
fn a_session_served_after_its_owner_was_ended_everywhere_is_a_resurrection() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    let end = s.run(
        2,
        None,
        Action::EndAll {
            owner: "ada".to_owned(),
        },
        Observed::NotLoaded,
        Outcome::Ended(1),
    );
    let read = s.run(1, Some(id), Action::Read, values(&[("c0", 1)]), ok());
    assert_eq!(s.check(), vec![Violation::Resurrected { end, read }]);
}

#[test]
fn an_end_all_may_miss_a_session_created_while_it_ran() {
    let s = Script {
        history: History::new(),
    };
    let id = SessionId::generate();
    let ending = s.begin(
        2,
        None,
        Action::EndAll {
            owner: "ada".to_owned(),
        },
    );
    s.run(
        0,
        None,
        Action::Login {
            owner: "ada".to_owned(),
            key: "c0".to_owned(),
            value: 1,
        },
        Observed::NotLoaded,
        set(id),
    );
    s.end(ending, Observed::NotLoaded, Outcome::Ended(0));
    s.run(1, Some(id), Action::Read, values(&[("c0", 1)]), ok());
    assert_eq!(s.check(), vec![]);
}

#[test]
fn the_old_id_served_after_an_acknowledged_cycle_id_is_a_resurrection() {
    let (old, new) = (SessionId::generate(), SessionId::generate());
    let s = Script::logged_in(old);
    let end = s.run(
        0,
        Some(old),
        Action::CycleId,
        values(&[("c0", 1)]),
        set(new),
    );
    s.run(0, Some(new), Action::Read, values(&[("c0", 1)]), ok());
    let read = s.run(1, Some(old), Action::Read, values(&[("c0", 1)]), ok());
    assert_eq!(s.check(), vec![Violation::Resurrected { end, read }]);
}

#[test]
fn a_write_acknowledged_on_the_old_id_must_survive_cycle_id() {
    let (old, new) = (SessionId::generate(), SessionId::generate());
    let s = Script::logged_in(old);
    let cycling = s.begin(0, Some(old), Action::CycleId);
    let written = s.run(1, Some(old), write(1, 1), values(&[("c0", 1)]), ok());
    s.end(cycling, values(&[("c0", 1)]), set(new));
    let read = s.run(0, Some(new), Action::Read, values(&[("c0", 1)]), ok());
    assert_eq!(
        s.check(),
        vec![Violation::LostWrite {
            write: written,
            read,
            key: "c1".to_owned(),
            written: 1,
            seen: None
        }]
    );
}

#[test]
fn a_logout_that_failed_or_is_under_way_may_or_may_not_have_ended_the_session() {
    for outcome in [failed(), removed()] {
        let id = SessionId::generate();
        let s = Script::logged_in(id);
        let logout = s.begin(0, Some(id), Action::Destroy);
        // Concurrent with the logout: served, and a cookie removal.
        s.run(1, Some(id), Action::Read, values(&[("c0", 1)]), ok());
        s.run(2, Some(id), Action::Read, Observed::Absent, removed());
        s.end(logout, Observed::NotLoaded, outcome.clone());
        if outcome == failed() {
            // Failed: it may have happened, or not.
            s.run(1, Some(id), Action::Read, values(&[("c0", 1)]), ok());
            s.run(
                2,
                Some(id),
                write(2, 1),
                Observed::Absent,
                set(SessionId::generate()),
            );
        }
        assert_eq!(s.check(), vec![], "logout ending with {outcome:?}");
    }
}

#[test]
fn a_live_session_replaced_by_a_fresh_one_is_a_replaced_cookie() {
    let (id, fresh) = (SessionId::generate(), SessionId::generate());
    let s = Script::logged_in(id);
    let op = s.run(1, Some(id), write(1, 1), Observed::Absent, set(fresh));
    let found = s.check();
    assert!(
        found.contains(&Violation::CookieReplaced {
            op,
            old: id,
            new: Some(fresh)
        }),
        "{found:?}"
    );
    // The session was lost too: client 0's login value is gone.
    assert!(
        found
            .iter()
            .any(|v| matches!(v, Violation::LostWrite { read, .. } if *read == op)),
        "{found:?}"
    );
}

#[test]
fn a_live_session_whose_cookie_is_removed_is_a_replaced_cookie() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    let op = s.run(1, Some(id), Action::Read, values(&[("c0", 1)]), removed());
    assert_eq!(
        s.check(),
        vec![Violation::CookieReplaced {
            op,
            old: id,
            new: None
        }]
    );
    assert!(s.check()[0].to_string().starts_with("cookie removed: #1"));
}

#[test]
fn cycle_id_and_destroy_may_change_the_cookie() {
    let (id, next) = (SessionId::generate(), SessionId::generate());
    let s = Script::logged_in(id);
    s.run(
        0,
        Some(id),
        Action::CycleId,
        values(&[("c0", 1)]),
        set(next),
    );
    s.run(
        0,
        Some(next),
        Action::Destroy,
        Observed::NotLoaded,
        removed(),
    );
    // Another tab still holding the first id finds nothing and gets a
    // fresh session: its old session was ended.
    s.run(
        1,
        Some(id),
        write(1, 1),
        Observed::Absent,
        set(SessionId::generate()),
    );
    assert_eq!(s.check(), vec![]);
}

#[test]
fn a_write_missing_from_every_read_until_a_newer_one_overwrote_it_is_lost() {
    let id = SessionId::generate();
    let s = Script::logged_in(id);
    let written = s.run(0, Some(id), write(0, 2), values(&[("c0", 1)]), ok());
    let read = s.run(1, Some(id), Action::Read, values(&[("c0", 1)]), ok());
    s.run(0, Some(id), write(0, 3), values(&[("c0", 1)]), ok());
    s.run(1, Some(id), Action::Read, values(&[("c0", 3)]), ok());
    let found = s.check();
    assert!(
        found.contains(&Violation::LostWrite {
            write: written,
            read,
            key: "c0".to_owned(),
            written: 2,
            seen: Some(1)
        }),
        "{found:?}"
    );
}
