//! The one list of contract tests, and the macros that turn it into `#[test]`s.

/// Calls `$callback!` with the name of every store test. The only place the
/// list is written, so the runner and the generated tests cannot drift.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_tests {
    ($callback:path; $($args:tt)*) => {
        $callback! { $($args)*;
            load_of_missing_id_is_none,
            create_then_load_round_trips,
            load_of_expired_record_is_none,
            every_operation_agrees_a_record_has_expired,
            create_never_overwrites,
            commit_applies_set_remove_and_clear_atomically,
            commit_to_missing_session_is_missing_and_does_not_resurrect,
            concurrent_disjoint_commits_all_survive,
            concurrent_commits_to_one_key_leave_one_of_the_values,
            commit_moves_the_expiry,
            touch_extends_the_lifetime_without_rewriting,
            delete_forgets_and_is_idempotent,
            prefixes_do_not_see_each_other,
            large_value_round_trips,
            version_grows_by_one_per_commit,
            stamp_agrees_with_load,
            owner_round_trips_through_create_and_commit,
            lifetime_round_trips_through_create_commit_and_touch,
            delete_by_owner_ends_that_owners_sessions_and_no_others,
            delete_by_owner_follows_owner_changes,
            commits_racing_delete_by_owner_never_bring_a_session_back,
            owner_changes_racing_delete_by_owner_leave_no_session_of_that_owner,
            expired_sessions_leave_the_owner_index,
            delete_if_version_deletes_only_at_the_version_given,
            commits_racing_delete_if_version_are_kept_or_refused,
            sessions_of_lists_that_owners_live_sessions_and_no_others,
            devices_are_listed_ended_by_handle_and_logged_out_but_the_current_one,
            the_owner_cap_ends_the_oldest_logins_never_the_new_one,
            concurrent_logins_past_the_cap_leave_only_the_newest,
            log_out_other_sessions_racing_a_login_keeps_it_or_counts_it,
            a_device_ended_while_it_commits_never_comes_back,
        }
    };
}

/// Calls `$callback!` with the name of every HTTP scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __http_scenarios {
    ($callback:path; $($args:tt)*) => {
        $callback! { $($args)*;
            counter_counts_across_requests,
            default_cookie_attributes_are_secure,
            login_cycles_the_id_and_the_old_cookie_stops_working,
            logout_ends_the_session,
            idle_timeout_ends_an_unused_session,
            absolute_timeout_ends_even_an_active_session,
            rotated_key_still_verifies_and_is_re_signed,
            read_only_request_sets_no_cookie_and_writes_nothing,
            store_outage_answers_503_and_overwrites_nothing,
            treat_as_empty_policy_serves_reads_during_an_outage,
            treat_as_empty_policy_refuses_a_write_after_a_failed_load,
            hung_store_answers_within_the_operation_timeout,
            log_out_everywhere_ends_the_users_sessions_on_every_server,
            hostile_cookies_get_a_fresh_session_and_touch_no_one_elses,
            your_devices_page_lists_ends_one_and_logs_out_the_others,
            the_owner_cap_logs_out_the_oldest_device,
            remember_me_outlives_a_normal_session_on_another_server,
            remember_me_lifetime_is_bounded_by_the_managers_maximums,
            header_token_carries_the_session_and_no_cookie_is_set,
            hostile_session_headers_get_a_fresh_session_and_touch_no_one_elses,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_runner {
    (; $($name:ident),* $(,)?) => {
        /// The names of every store test, in the order [`run_all`] runs them.
        pub const TESTS: &[&str] = &[$(stringify!($name)),*];

        /// Runs every store test against `factory`, in order, panicking at
        /// the first failure. For harnesses that cannot use
        /// [`store_suite!`](crate::store_suite).
        pub async fn run_all(factory: &dyn StoreFactory) {
            $( $name(factory).await; )*
        }

        /// Runs the store test called `name`, one of [`TESTS`].
        ///
        /// # Panics
        /// When the test fails, or no test has that name.
        pub async fn run_one(name: &str, factory: &dyn StoreFactory) {
            match name {
                $( stringify!($name) => $name(factory).await, )*
                other => panic!("no store test is called {other:?}; see TESTS"),
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __http_runner {
    (; $($name:ident),* $(,)?) => {
        /// The names of every HTTP scenario, in the order [`run_all`] runs them.
        pub const SCENARIOS: &[&str] = &[$(stringify!($name)),*];

        /// Runs every scenario against `app` with stores from `factory`, in
        /// order, panicking at the first failure.
        pub async fn run_all(app: &dyn TestApp, factory: &dyn StoreFactory) {
            $( $name(app, factory).await; )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_test_fns {
    ($factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::block_on(async {
                    let factory = $factory;
                    $crate::store::$name(&factory).await;
                });
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __http_test_fns {
    ($app:expr, $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::block_on(async {
                    let app = $app;
                    let factory = $factory;
                    $crate::http::$name(&app, &factory).await;
                });
            }
        )*
    };
}

/// Generates one `#[test]` per store contract test, each running against a
/// store factory built by `$factory` (an expression evaluated inside the
/// test's runtime).
///
/// ```no_run
/// session_conformance::store_suite!(session_conformance::MemoryFactory::new());
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_suite {
    ($factory:expr) => {
        $crate::__store_tests!($crate::__store_test_fns; $factory);
    };
}

/// Generates one `#[test]` per HTTP scenario, each serving the adapter built
/// by `$app` with stores from `$factory`.
///
/// The adapter side is a [`TestApp`](crate::TestApp) that serves
/// [`respond`](crate::http::respond) behind its middleware; `session-tower`'s
/// `tests/conformance.rs` is a complete one in twenty lines:
/// ```no_run
/// use session_conformance::{async_trait, RunningApp, TestApp};
/// use session_core::SessionManager;
///
/// struct MyFrameworkApp;
///
/// #[async_trait]
/// impl TestApp for MyFrameworkApp {
///     async fn serve(&self, manager: SessionManager) -> RunningApp {
///         // Bind 127.0.0.1:0, route every path to `respond(path, &session)`
///         // behind your middleware built from `manager`, then:
///         # let addr = "127.0.0.1:0".parse().unwrap();
///         RunningApp::new(addr, || { /* stop the server */ })
///     }
/// }
///
/// session_conformance::http_suite!(MyFrameworkApp, session_conformance::MemoryFactory::new());
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! http_suite {
    ($app:expr, $factory:expr) => {
        $crate::__http_scenarios!($crate::__http_test_fns; $app, $factory);
    };
}
