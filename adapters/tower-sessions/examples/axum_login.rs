//! axum-login's login flow on session-kit's Redis store: an unchanged
//! axum-login app whose tower-sessions layer keeps its sessions in
//! session-kit's `RedisStore` through `TowerSessionsStore`. Swap the store
//! for a `FailoverStore` or a `ClusterStore` and nothing else changes.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p session-tower-sessions --example axum_login
//! curl -i -d 'username=ada&password=correct horse' http://127.0.0.1:3000/login
//! curl -i -b 'id=<the id from Set-Cookie>' http://127.0.0.1:3000/me
//! curl -i -b 'id=<the id>' -X POST http://127.0.0.1:3000/logout
//! ```
//!
//! `POST /logout_everywhere` ends every session of the logged-in user, on
//! every device: the store reads each session's owner from axum-login's
//! data ([`TowerSessionsStore::with_owner`]), and session-kit's owner index
//! does the rest.
//!
//! `tests/axum_login.rs` drives this same app against a Redis of its own.

use std::{collections::HashMap, sync::Arc};

use axum::{
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
    Extension, Form, Router,
};
use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId};
use serde::Deserialize;
use session_core::store::SessionStore;
use session_tower_sessions::TowerSessionsStore;
use time::Duration;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The one user of this example.
#[derive(Debug, Clone)]
pub(crate) struct User {
    id: u64,
    name: String,
    /// Changes whenever the password does, which ends the user's sessions
    /// (axum-login compares it on every request). A real app returns its
    /// password hash here.
    auth_hash: Vec<u8>,
}

impl AuthUser for User {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.auth_hash
    }
}

/// What the login form posts.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

/// Users in memory: ada, whose password is "correct horse". A real backend
/// reads a database and verifies a password hash (argon2 or similar).
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    ada: User,
}

impl Default for Backend {
    fn default() -> Self {
        Self {
            ada: User {
                id: 1,
                name: "ada".to_owned(),
                auth_hash: b"ada:password-version-1".to_vec(),
            },
        }
    }
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Credentials;
    type Error = std::convert::Infallible;

    async fn authenticate(&self, credentials: Credentials) -> Result<Option<User>, Self::Error> {
        let known =
            credentials.username == self.ada.name && credentials.password == "correct horse";
        Ok(known.then(|| self.ada.clone()))
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Self::Error> {
        Ok((*id == self.ada.id).then(|| self.ada.clone()))
    }
}

/// `store`, any session-kit store, as tower-sessions' store, with each
/// session's owner read from axum-login's data so that one user's sessions
/// can be ended together.
pub(crate) fn session_store(store: Arc<dyn SessionStore>) -> TowerSessionsStore {
    TowerSessionsStore::new(store).with_owner(axum_login_user)
}

/// The logged-in user's id, where axum-login keeps it: `user_id` under its
/// data key (`axum-login.data` unless the app sets another).
fn axum_login_user(data: &HashMap<String, serde_json::Value>) -> Option<String> {
    match data.get("axum-login.data")?.get("user_id")? {
        serde_json::Value::Null => None,
        serde_json::Value::String(id) => Some(id.clone()),
        id => Some(id.to_string()),
    }
}

/// The app: axum-login over tower-sessions over `store`.
pub(crate) fn app(store: TowerSessionsStore) -> Router {
    let session_layer = SessionManagerLayer::new(store.clone())
        .with_expiry(Expiry::OnInactivity(Duration::hours(1)));
    let auth_layer = AuthManagerLayerBuilder::new(Backend::default(), session_layer).build();
    Router::new()
        .route("/visit", get(visit))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/logout_everywhere", post(logout_everywhere))
        .layer(auth_layer)
        .layer(Extension(store))
}

/// Counts an anonymous visitor's visits: a session before login, which
/// login must not keep (session fixation).
async fn visit(session: Session) -> Result<String, StatusCode> {
    let visits: u64 = session
        .get("visits")
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        .unwrap_or(0)
        + 1;
    session
        .insert("visits", visits)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(visits.to_string())
}

async fn login(
    mut auth: AuthSession<Backend>,
    Form(credentials): Form<Credentials>,
) -> impl IntoResponse {
    let user = match auth.authenticate(credentials).await {
        Ok(Some(user)) => user,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "wrong name or password").into_response(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    // Logging in gives the session a new id (axum-login cycles it).
    if auth.login(&user).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    format!("logged in as {}", user.name).into_response()
}

async fn me(auth: AuthSession<Backend>) -> impl IntoResponse {
    match auth.user {
        Some(user) => user.name.into_response(),
        None => (StatusCode::UNAUTHORIZED, "not logged in").into_response(),
    }
}

async fn logout(mut auth: AuthSession<Backend>) -> impl IntoResponse {
    match auth.logout().await {
        Ok(_) => "logged out".into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Ends every session of the logged-in user, this one included.
async fn logout_everywhere(
    auth: AuthSession<Backend>,
    Extension(store): Extension<TowerSessionsStore>,
) -> impl IntoResponse {
    let Some(user) = auth.user else {
        return (StatusCode::UNAUTHORIZED, "not logged in").into_response();
    };
    match store.end_all_for(&user.id.to_string()).await {
        Ok(ended) => format!("ended {ended} sessions").into_response(),
        Err(err) if err.kind().is_transient() => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[allow(dead_code)] // the test includes this file for `app` alone
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let config = session_redis::RedisConfig::from_url(&url)?;
    let store = session_redis::RedisStore::connect(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(session_store(Arc::new(store))))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
