//! The behaviour every [`StateStore`](super::StateStore) implementation owes the task: one set of
//! tests, instantiated for each store with `store_contract_tests!(make)`, where `make` returns
//! `(guard, store)` and the guard keeps whatever the store lives in (a directory) alive.

macro_rules! store_contract_tests {
    ($make:expr) => {
        use std::ops::Bound;

        use crate::store::{ByteEntries, KeyValueBytesStore, StateStore};

        fn entries(store: &dyn StateStore) -> ByteEntries {
            store.range(Bound::Unbounded, Bound::Unbounded).unwrap()
        }

        #[test]
        fn pending_writes_are_visible_and_abort_drops_them() {
            let (_guard, mut store) = $make();
            store.put(b"a", Some(b"1")).unwrap();
            store.commit().unwrap();
            store.put(b"a", Some(b"2")).unwrap();
            store.put(b"b", Some(b"3")).unwrap();
            assert_eq!(store.get(b"a").unwrap(), Some(b"2".to_vec()));
            store.abort();
            assert_eq!(entries(&store), vec![(b"a".to_vec(), b"1".to_vec())]);
        }

        #[test]
        fn commit_applies_writes_and_deletes() {
            let (_guard, mut store) = $make();
            store.put(b"a", Some(b"1")).unwrap();
            store.put(b"b", Some(b"2")).unwrap();
            store.commit().unwrap();
            store.put(b"a", None).unwrap();
            assert_eq!(store.get(b"a").unwrap(), None);
            store.commit().unwrap();
            assert_eq!(entries(&store), vec![(b"b".to_vec(), b"2".to_vec())]);
            assert_eq!(store.get(b"a").unwrap(), None);
        }

        #[test]
        fn rollback_to_savepoint_keeps_earlier_pending_writes() {
            let (_guard, mut store) = $make();
            store.put(b"a", Some(b"1")).unwrap();
            store.savepoint();
            store.put(b"a", Some(b"2")).unwrap();
            store.put(b"c", Some(b"3")).unwrap();
            store.rollback_to_savepoint();
            assert_eq!(entries(&store), vec![(b"a".to_vec(), b"1".to_vec())]);
        }

        #[test]
        fn range_merges_pending_over_committed_in_key_order() {
            let (_guard, mut store) = $make();
            for key in [b"a", b"c", b"e"] {
                store.put(key, Some(b"old")).unwrap();
            }
            store.commit().unwrap();
            store.put(b"b", Some(b"new")).unwrap();
            store.put(b"c", None).unwrap();
            store.put(b"e", Some(b"new")).unwrap();
            assert_eq!(
                entries(&store),
                vec![
                    (b"a".to_vec(), b"old".to_vec()),
                    (b"b".to_vec(), b"new".to_vec()),
                    (b"e".to_vec(), b"new".to_vec())
                ]
            );
            let bounded = store.range(Bound::Excluded(b"a"), Bound::Included(b"c")).unwrap();
            assert_eq!(bounded, vec![(b"b".to_vec(), b"new".to_vec())]);
        }

        #[test]
        fn inverted_ranges_are_empty_not_panics() {
            let (_guard, store) = $make();
            assert!(store.range(Bound::Included(b"z"), Bound::Included(b"a")).unwrap().is_empty());
            assert!(store.range(Bound::Excluded(b"a"), Bound::Excluded(b"a")).unwrap().is_empty());
        }

        #[test]
        fn restore_writes_committed_state() {
            let (_guard, mut store) = $make();
            store.restore(b"a", Some(b"1")).unwrap();
            store.restore(b"b", Some(b"2")).unwrap();
            store.abort();
            store.commit().unwrap();
            assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
            store.restore(b"a", None).unwrap();
            store.commit().unwrap();
            assert_eq!(store.get(b"a").unwrap(), None);
            assert_eq!(entries(&store), vec![(b"b".to_vec(), b"2".to_vec())]);
        }

        #[test]
        fn wipe_forgets_committed_and_pending_state() {
            let (_guard, mut store) = $make();
            store.put(b"a", Some(b"1")).unwrap();
            store.commit().unwrap();
            store.put(b"b", Some(b"2")).unwrap();
            store.wipe().unwrap();
            assert!(entries(&store).is_empty());
            assert_eq!(store.entries().unwrap(), 0);
        }

        #[test]
        fn entries_count_live_keys_only() {
            let (_guard, mut store) = $make();
            for key in [b"a", b"b", b"c"] {
                store.put(key, Some(b"1")).unwrap();
            }
            store.commit().unwrap();
            assert_eq!(store.entries().unwrap(), 3);
            store.put(b"a", None).unwrap();
            store.put(b"b", Some(b"2")).unwrap();
            store.put(b"never-written", None).unwrap();
            store.commit().unwrap();
            assert_eq!(store.entries().unwrap(), 2, "an overwrite, a delete and a delete of nothing");
            store.restore(b"c", None).unwrap();
            store.restore(b"d", Some(b"1")).unwrap();
            store.commit().unwrap();
            assert_eq!(store.entries().unwrap(), 2, "after a restore");
            store.put(b"e", Some(b"1")).unwrap();
            store.commit().unwrap();
            assert_eq!(store.entries().unwrap(), 3);
        }
    };
}

pub(crate) use store_contract_tests;
