//! What the manager-level tests share: reading what a finished request
//! answered.

use session_core::{manager::Finish, SessionId};

/// The `name=value` of the `Set-Cookie` a finished request sends, if any.
///
/// # Panics
/// When the request answered 503 instead.
pub(crate) fn set_cookie(finish: Finish) -> Option<String> {
    match finish {
        Finish::Respond { set_cookie } => {
            set_cookie.map(|header| header.split(';').next().unwrap().to_owned())
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The session id inside a `name=value` cookie.
pub(crate) fn id_of(cookie: &str) -> SessionId {
    let value = cookie.split_once('=').unwrap().1;
    SessionId::decode(value.split('.').next().unwrap()).unwrap()
}
