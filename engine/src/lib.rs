//! One core's store.
