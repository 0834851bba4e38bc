//! Everything that moves bytes: executors, listeners, the cross-core mesh.
