//! The thin ringcache client: blocking std networking, routes each key straight to its core.
