//! The signed session cookie: its attributes, its keys and its codec.
//!
//! A cookie's value is `<id>.<tag>`: the 22-character session id, a dot, and
//! 43 characters of unpadded base64url HMAC-SHA256 over the cookie's name and
//! the id. Binding the name means a cookie issued under one name (or by an app
//! with another name on the same domain) does not verify under another.
//!
//! This module is for adapter authors, who move the cookie in and out of
//! their framework's requests; apps configure the cookie through
//! [`CookieConfig`](crate::CookieConfig) and sign it with a
//! [`Key`](crate::Key) or [`KeyRing`](crate::KeyRing), at the crate root.

mod codec;
pub(crate) mod config;
pub(crate) mod key;

pub(crate) use codec::Unverified;
pub use codec::{CookieCodec, Verified};
pub use key::MIN_SECRET_LEN;
