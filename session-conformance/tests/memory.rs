//! `MemoryStore` against the whole store contract.

session_conformance::store_suite!(session_conformance::MemoryFactory::new());
