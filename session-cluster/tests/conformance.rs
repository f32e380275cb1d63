//! The whole store contract against a 3-node cluster (`R = 2`), each call of
//! each test sent to the next node in turn, as a round-robin balancer would.

mod support;

session_conformance::store_suite!(support::ThreeNodes::start().await);
