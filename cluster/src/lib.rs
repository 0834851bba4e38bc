//! Who owns what in a ringcache cluster: the key hash, the in-node core choice and (later) the
//! ring, cluster map, membership state machine and hybrid logical clock. Pure: no I/O.
