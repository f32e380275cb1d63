//! Every request and every reply survives the wire: each variant, with
//! owners, indexes, tombstones and times to the nanosecond.

use proptest::{collection::vec, option, prelude::*};

use super::*;
use crate::settle::Intake;

fn intake() -> impl Strategy<Value = Intake> {
    (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(process, view, lease)| Intake {
        process,
        view,
        lease,
    })
}
use crate::wire::strategies::{changes, delta, entry, id, live, text, time};

/// Every variant of [`Request`].
fn request() -> impl Strategy<Value = Request> {
    let owner = prop_oneof![
        text().prop_map(|key| Load { key }.into_request()),
        (text(), live()).prop_map(|(key, record)| Create { key, record }.into_request()),
        (text(), changes(), time()).prop_map(|(key, changes, expires_at)| Commit {
            key,
            changes,
            expires_at
        }
        .into_request()),
        (text(), time()).prop_map(|(key, expires_at)| Touch { key, expires_at }.into_request()),
        text().prop_map(|key| Delete { key }.into_request()),
        (text(), id(), time())
            .prop_map(|(key, id, until)| IndexAdd { key, id, until }.into_request()),
        text().prop_map(|key| IndexRead { key }.into_request()),
        (text(), vec(id(), 0..4)).prop_map(|(key, ids)| IndexRemove { key, ids }.into_request()),
        (text(), text(), time())
            .prop_map(|(key, owner, until)| EndOwned { key, owner, until }.into_request()),
        (text(), any::<u64>())
            .prop_map(|(key, version)| DeleteIfVersion { key, version }.into_request()),
    ];
    let holder = prop_oneof![
        text().prop_map(|key| Fetch { key }.into_request()),
        (text(), entry()).prop_map(|(key, entry)| Install { key, entry }.into_request()),
        (text(), live()).prop_map(|(key, record)| CreateCopy { key, record }.into_request()),
        (text(), any::<u64>(), time()).prop_map(|(key, version, expires_at)| TouchCopy {
            key,
            version,
            expires_at,
        }
        .into_request()),
        (text(), delta()).prop_map(|(key, delta)| IndexCopy { key, delta }.into_request()),
    ];
    let rebalance = prop_oneof![
        vec((text(), any::<u64>(), time(), any::<bool>()), 0..4).prop_map(|entries| Offer {
            entries: entries
                .into_iter()
                .map(|(key, version, until, gone)| Offered {
                    key,
                    version,
                    until,
                    gone,
                })
                .collect(),
        }
        .into_request()),
        vec((text(), entry()), 0..4).prop_map(|entries| Push {
            entries: entries
                .into_iter()
                .map(|(key, entry)| Pushed { key, entry })
                .collect(),
        }
        .into_request()),
        (intake(), any::<u64>())
            .prop_map(|(intake, view)| HandedOver { intake, view }.into_request()),
    ];
    let lease = (any::<u64>(), any::<u64>(), vec(text(), 0..5), intake()).prop_map(
        |(suspect_timeout_ms, horizon_secs, members, intake)| {
            Confirm {
                suspect_timeout_ms,
                horizon_secs,
                members,
                intake,
            }
            .into_request()
        },
    );
    prop_oneof![owner, holder, rebalance, lease]
}

fn failure() -> impl Strategy<Value = Failure> {
    let kind = prop::sample::select(vec![
        WireErrorKind::Unavailable,
        WireErrorKind::Timeout,
        WireErrorKind::Corrupt,
        WireErrorKind::TooLarge,
        WireErrorKind::Other,
    ]);
    (kind, text()).prop_map(|(kind, reason)| Failure { kind, reason })
}

/// An answer of `R`'s reply type, or a failure.
fn answer<T: std::fmt::Debug>(
    reply: impl Strategy<Value = T>,
) -> impl Strategy<Value = Result<T, Failure>> {
    prop_oneof![reply.prop_map(Ok), failure().prop_map(Err)]
}

/// Encodes and decodes `answer` as the reply to `R`.
fn round_trip<R: Call>(answer: &Result<R::Reply, Failure>) -> Option<Result<R::Reply, Failure>> {
    Encoded::<R>::decode_reply(&encode_reply(answer).unwrap())
}

proptest! {
    #[test]
    fn every_request_round_trips(request in request()) {
        let bytes = postcard::to_allocvec(&request).unwrap();
        let back: Request = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back.name(), request.name());
        prop_assert_eq!(back, request);
        #[cfg(feature = "codec")]
        {
            prop_assert_eq!(crate::codec::reencode_request(&bytes).unwrap(), bytes.clone());
            prop_assert!(crate::codec::decode_request(&bytes).is_ok());
        }
    }

    #[test]
    fn a_cut_request_is_refused(request in request()) {
        // Postcard is self-delimiting, so a body cut anywhere is refused,
        // never misread as a shorter request.
        let bytes = postcard::to_allocvec(&request).unwrap();
        for len in 0..bytes.len() {
            prop_assert!(postcard::from_bytes::<Request>(&bytes[..len]).is_err(), "{} of {} bytes", len, bytes.len());
        }
    }

    #[test]
    fn every_reply_round_trips(
        loaded in answer(option::of(live())),
        created in answer(prop::sample::select(vec![CreateOutcome::Created, CreateOutcome::IdTaken])),
        committed in answer(prop_oneof![
            any::<u64>().prop_map(|version| CommitOutcome::Applied { version }),
            Just(CommitOutcome::Missing),
        ]),
        touched in answer(any::<bool>()),
        unit in answer(Just(())),
        indexed in answer(vec((id(), time()).prop_map(|(id, until)| IndexedSession { id, until }), 0..4)),
        ended in answer(prop::sample::select(vec![EndOutcome::Ended, EndOutcome::Absent, EndOutcome::Kept])),
        deleted_if in answer(prop::sample::select(vec![
            WireConditionalDelete::Deleted,
            WireConditionalDelete::Changed,
            WireConditionalDelete::Missing,
        ])),
        fetched in answer(option::of(entry())),
        copied in answer(prop_oneof![Just(CopyOutcome::Accepted), entry().prop_map(CopyOutcome::Conflict)]),
        patched in answer(prop_oneof![
            Just(PatchOutcome::Accepted),
            Just(PatchOutcome::NeedRecord),
            entry().prop_map(PatchOutcome::Conflict),
        ]),
        wanted in answer(vec(any::<u32>(), 0..8).prop_map(|positions| Wanted { positions })),
    ) {
        prop_assert_eq!(round_trip::<Load>(&loaded), Some(loaded));
        prop_assert_eq!(round_trip::<Create>(&created), Some(created));
        prop_assert_eq!(round_trip::<Commit>(&committed), Some(committed));
        prop_assert_eq!(round_trip::<Touch>(&touched), Some(touched));
        prop_assert_eq!(round_trip::<Delete>(&unit), Some(unit.clone()));
        prop_assert_eq!(round_trip::<IndexAdd>(&unit), Some(unit.clone()));
        prop_assert_eq!(round_trip::<IndexRemove>(&unit), Some(unit.clone()));
        prop_assert_eq!(round_trip::<Push>(&unit), Some(unit));
        prop_assert_eq!(round_trip::<IndexRead>(&indexed), Some(indexed));
        prop_assert_eq!(round_trip::<EndOwned>(&ended), Some(ended));
        prop_assert_eq!(round_trip::<DeleteIfVersion>(&deleted_if), Some(deleted_if));
        prop_assert_eq!(round_trip::<Fetch>(&fetched), Some(fetched));
        prop_assert_eq!(round_trip::<Install>(&copied), Some(copied));
        prop_assert_eq!(round_trip::<TouchCopy>(&patched), Some(patched));
        prop_assert_eq!(round_trip::<Offer>(&wanted), Some(wanted));
    }

    #[test]
    fn a_failure_is_the_same_reply_to_every_request(failure in failure()) {
        // The link answers a request that ran out of time without knowing
        // its reply type; every caller must read those bytes as the failure.
        let bytes = failure.encode_as_reply().unwrap();
        prop_assert_eq!(Encoded::<Load>::decode_reply(&bytes), Some(Err(failure.clone())));
        prop_assert_eq!(Encoded::<Offer>::decode_reply(&bytes), Some(Err(failure.clone())));
        prop_assert_eq!(Encoded::<Install>::decode_reply(&bytes), Some(Err(failure)));
    }
}

#[test]
fn a_reply_of_another_shape_is_an_error_not_a_panic() {
    // A `Wanted` where a commit's outcome belongs: refused (the caller
    // reports `Corrupt`), never misread.
    let bytes = encode_reply(&Ok::<_, Failure>(Wanted {
        positions: vec![u32::MAX; 3],
    }))
    .unwrap();
    assert_eq!(Encoded::<Commit>::decode_reply(&bytes), None);
    assert_eq!(Encoded::<Load>::decode_reply(&[0xff]), None);
    assert_eq!(Encoded::<Delete>::decode_reply(&[]), None);
}
