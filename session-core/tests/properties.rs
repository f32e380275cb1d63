//! Properties that must hold for every input, not just the ones a
//! hand-written test thought of: changes to disjoint keys commute, in any
//! order and through a real store; a cookie verifies under its own key and
//! under no other; no byte string read as a cookie header panics.

use std::time::{Duration, SystemTime};

use proptest::{collection, prelude::*, sample::subsequence};
use session_core::{
    cookie::CookieCodec,
    memory::MemoryStore,
    store::{Changes, Committed, Data, Record, SessionStore},
    CookieConfig, Key, KeyRing, SessionId,
};

/// One change to one key: `Some(value)` sets it, `None` removes it.
type Edit = (String, Option<String>);

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,6}",
        "\"[a-zA-Z0-9 é]{0,12}\"",
        Just("null".to_owned()),
    ]
}

/// A base session and several changes, each over its own keys (some of
/// which the base has), so that no two changes touch the same key.
fn disjoint_changes() -> impl Strategy<Value = (Data, Vec<Vec<Edit>>)> {
    let keys = collection::btree_set("[a-z]{1,6}", 1..24);
    keys.prop_flat_map(|keys| {
        let keys: Vec<String> = keys.into_iter().collect();
        let count = keys.len();
        (
            collection::vec(prop::option::of(value()), count),
            collection::vec(prop::option::of(value()), count),
            collection::vec(0..4usize, count),
            Just(keys),
        )
    })
    .prop_map(|(base, edits, owners, keys)| {
        let base: Data = keys
            .iter()
            .zip(&base)
            .filter_map(|(key, value)| value.clone().map(|v| (key.clone(), v)))
            .collect();
        // Key i belongs to change owners[i]: disjoint by construction.
        let mut changes: Vec<Vec<Edit>> = vec![Vec::new(); 4];
        for ((key, edit), owner) in keys.into_iter().zip(edits).zip(owners) {
            changes[owner].push((key, edit));
        }
        (base, changes)
    })
}

fn to_changes(edits: &[Edit]) -> Changes {
    let mut changes = Changes::default();
    for (key, edit) in edits {
        match edit {
            Some(value) => changes.set(key.clone(), value.clone()),
            None => changes.remove(key.clone()),
        }
    }
    changes
}

fn applied(base: &Data, order: &[&Vec<Edit>]) -> Data {
    let mut data = base.clone();
    for edits in order {
        to_changes(edits).apply_to(&mut data);
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn changes_to_disjoint_keys_commute((base, changes) in disjoint_changes(), order in Just(()).prop_perturb(|(), mut rng| {
        let mut order: Vec<usize> = (0..4).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        order
    })) {
        let forwards: Vec<&Vec<Edit>> = changes.iter().collect();
        let shuffled: Vec<&Vec<Edit>> = order.iter().map(|&i| &changes[i]).collect();
        prop_assert_eq!(applied(&base, &forwards), applied(&base, &shuffled));
    }

    /// The same through a store: two records committed in opposite orders
    /// end up equal.
    #[test]
    fn disjoint_commits_commute_in_a_store((base, changes) in disjoint_changes()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let store = MemoryStore::new();
            let now = SystemTime::now();
            let later = now + Duration::from_secs(60);
            let (a, b) = (SessionId::generate(), SessionId::generate());
            for id in [a, b] {
                let _ = store.create(&Record::new(id, base.clone(), now, later)).await.unwrap();
            }
            for edits in &changes {
                let committed = store.commit(&a, &to_changes(edits), later).await.unwrap();
                assert!(matches!(committed, Committed::Applied { .. }));
            }
            for edits in changes.iter().rev() {
                let _ = store.commit(&b, &to_changes(edits), later).await.unwrap();
            }
            let (a, b) = (store.load(&a).await.unwrap().unwrap(), store.load(&b).await.unwrap().unwrap());
            assert_eq!(a.data, b.data);
            assert_eq!(a.version, b.version);
        });
    }

    #[test]
    fn a_cookie_verifies_under_its_key_and_no_other(
        secret in collection::vec(any::<u8>(), 32..64),
        other in collection::vec(any::<u8>(), 32..64),
        name in "[a-zA-Z][a-zA-Z0-9_-]{0,15}",
    ) {
        prop_assume!(secret != other);
        let config = CookieConfig::default().with_name(name.clone());
        let ours = CookieCodec::new(config.clone(), KeyRing::new(Key::from_secret(&secret).unwrap())).unwrap();
        let theirs = CookieCodec::new(config, KeyRing::new(Key::from_secret(&other).unwrap())).unwrap();
        let id = SessionId::generate();
        let header = format!("{name}={}", ours.sign(&id));
        prop_assert_eq!(ours.read([header.as_bytes()]).map(|v| v.id), Some(id));
        prop_assert!(theirs.read([header.as_bytes()]).is_none());
        // And no single-character change verifies under our own key.
        let value = ours.sign(&id);
        for (i, c) in value.char_indices() {
            let swapped = if c == 'A' { 'B' } else { 'A' };
            let mut tampered = value.clone();
            tampered.replace_range(i..i + c.len_utf8(), &swapped.to_string());
            let header = format!("{name}={tampered}");
            prop_assert!(ours.read([header.as_bytes()]).is_none(), "{} verified", tampered);
        }
    }

    #[test]
    fn no_cookie_header_panics(headers in collection::vec(collection::vec(any::<u8>(), 0..200), 0..4),
                               picks in subsequence(vec!["session=", "; ", ".", "=", "=="], 0..5)) {
        let codec = CookieCodec::new(CookieConfig::default(), KeyRing::new(Key::generate())).unwrap();
        let mut headers = headers;
        headers.push(picks.concat().into_bytes());
        let _ = codec.read(headers.iter().map(Vec::as_slice));
    }
}
