//! The signed session cookie: its attributes, its keys and its codec.
//!
//! A cookie's value is `<id>.<tag>`: the 22-character session id, a dot, and
//! 43 characters of unpadded base64url HMAC-SHA256 over the cookie's name and
//! the id. Binding the name means a cookie issued under one name (or by an app
//! with another name on the same domain) does not verify under another.

mod codec;
mod config;
mod key;

pub use codec::{CookieCodec, Verified};
pub use config::{CookieConfig, SameSite};
pub use key::{Key, KeyError, KeyRing, MIN_SECRET_LEN};
