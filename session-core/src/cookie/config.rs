//! Cookie attributes.

use crate::ConfigError;

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level cross-site navigations. The
    /// default: it blocks cross-site form posts (CSRF) while keeping links from
    /// other sites logged in.
    #[default]
    Lax,
    /// Sent on every request. Browsers require `Secure` with it.
    None,
}

/// How the session cookie is named and which attributes it carries.
///
/// Every default is the most secure choice that still works for a normal
/// same-site web app:
///
/// | attribute | default | why |
/// |---|---|---|
/// | name | `session` | neutral; does not advertise the framework |
/// | `Secure` | on | the cookie is a bearer credential; never send it in clear text. Browsers treat `http://localhost` as secure, so local development still works |
/// | `HttpOnly` | on | scripts (and XSS) cannot read it |
/// | `SameSite` | `Lax` | blocks cross-site posts, keeps inbound links logged in |
/// | `Path` | `/` | one session for the whole site |
/// | `Domain` | unset | host-only: subdomains do not receive it |
/// | `__Host-` prefix | off | on is stronger (the browser enforces `Secure`, `Path=/`, no `Domain`); off because it renames the cookie |
/// | persistent | off | no `Max-Age`: the cookie ends with the browser session, the store's idle timeout ends it sooner |
///
/// ```
/// use session_core::{CookieConfig, SameSite};
///
/// let config = CookieConfig::default()
///     .with_name("sid")
///     .with_same_site(SameSite::Strict)
///     .with_host_prefix(true);
/// assert_eq!(config.full_name(), "__Host-sid");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct CookieConfig {
    pub(crate) name: String,
    pub(crate) domain: Option<String>,
    pub(crate) path: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) host_prefix: bool,
    pub(crate) persistent: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "session".to_owned(),
            domain: None,
            path: "/".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            host_prefix: false,
            persistent: false,
        }
    }
}

impl CookieConfig {
    /// Sets the cookie name (without the `__Host-` prefix).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the `Domain` attribute, sharing the cookie with subdomains.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets the `Path` attribute.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets `Secure`. Turn it off only for plain-HTTP test setups that are not
    /// on `localhost`.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets `HttpOnly`.
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// Sets `SameSite`.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Prefixes the name with `__Host-`, which makes browsers refuse the cookie
    /// unless it is `Secure`, has `Path=/` and no `Domain`.
    pub fn with_host_prefix(mut self, host_prefix: bool) -> Self {
        self.host_prefix = host_prefix;
        self
    }

    /// Makes the cookie persistent: it carries a `Max-Age` equal to the time the
    /// session has left, and survives a browser restart.
    pub fn with_persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// The name as sent to browsers, with the `__Host-` prefix when enabled.
    #[must_use]
    pub fn full_name(&self) -> String {
        if self.host_prefix {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// Whether `Max-Age` is sent.
    #[must_use]
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The name, without any `__Host-` prefix (see
    /// [`full_name`](Self::full_name)).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `Domain` attribute; `None` is a host-only cookie.
    #[must_use]
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The `Path` attribute.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether `Secure` is sent.
    #[must_use]
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Whether `HttpOnly` is sent.
    #[must_use]
    pub fn is_http_only(&self) -> bool {
        self.http_only
    }

    /// The `SameSite` attribute.
    #[must_use]
    pub fn same_site(&self) -> SameSite {
        self.same_site
    }

    /// Whether the name gets the `__Host-` prefix.
    #[must_use]
    pub fn is_host_prefixed(&self) -> bool {
        self.host_prefix
    }

    /// Checks the attributes browsers would refuse together (a `__Host-`
    /// name without `Secure` or with a `Domain`, `SameSite=None` without
    /// `Secure`, …), naming the offending key.
    ///
    /// # Errors
    /// A [`ConfigError`] whose key is the attribute, under `cookie.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let is_token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if self.name.is_empty() || !self.name.chars().all(is_token_char) {
            return Err(ConfigError::new(
                "cookie.name",
                "must be a non-empty HTTP token (letters, digits and !#$%&'*+-.^_`|~)",
            ));
        }
        if !self.path.starts_with('/') || self.path.contains(';') {
            return Err(ConfigError::new(
                "cookie.path",
                "must start with '/' and contain no ';'",
            ));
        }
        if let Some(domain) = &self.domain {
            if domain.is_empty() || domain.contains([';', ' ', ',']) {
                return Err(ConfigError::new(
                    "cookie.domain",
                    "must be a bare host name such as example.com",
                ));
            }
        }
        if self.host_prefix {
            if !self.secure {
                return Err(ConfigError::new(
                    "cookie.secure",
                    "must be true when cookie.host_prefix is on; browsers drop __Host- cookies without Secure",
                ));
            }
            if self.path != "/" {
                return Err(ConfigError::new(
                    "cookie.path",
                    "must be \"/\" when cookie.host_prefix is on",
                ));
            }
            if self.domain.is_some() {
                return Err(ConfigError::new(
                    "cookie.domain",
                    "must be unset when cookie.host_prefix is on",
                ));
            }
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::new(
                "cookie.same_site",
                "None requires cookie.secure = true; browsers drop SameSite=None cookies without Secure",
            ));
        }
        Ok(())
    }
}
