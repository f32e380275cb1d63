//! The whole contract against a 3-node cluster (`R = 2`), each call of each
//! test sent to the next node in turn, as a round-robin balancer would: the
//! store-level suite, and the HTTP scenarios on both adapters, so two app
//! servers of a scenario ("log out everywhere" among them) each reach the
//! cluster through a different node.

mod support;

session_conformance::store_suite!(support::ThreeNodes::start().await);

mod http {
    session_conformance::http_suite!(
        session_tower::conformance::AxumApp,
        super::support::ThreeNodes::start().await
    );
}

mod http_actix {
    session_conformance::http_suite!(
        session_actix::conformance::ActixApp,
        super::support::ThreeNodes::start().await
    );
}
